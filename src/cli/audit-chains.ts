import pino from 'pino';
import type { Knex } from 'knex';
import type { AuditChain } from '../audit/chains.js';
import type { Checkpoint } from '../audit/checkpoint.js';
import { checkAgainstCheckpoints, readCut, storedCheckpoints } from '../audit/verify.js';
import { createDecisionLog } from '../decisions/index.js';
import { createAuditLog } from '../egress/audit.js';
import type { ChainedLog } from '../lib/chained-log.js';
import { createToolAudit } from '../mcp/audit.js';
import { createWorkerAudit } from '../workers/audit.js';

/** What `audit verify` and `audit prune` use of a chained log. */
export type ChainVerifier = Pick<ChainedLog<unknown>, 'verify' | 'close'>;

/** A writer of each chained table, used only for its `verify` (it recomputes hashes the way the writer made them). */
export function chainVerifiers(knex: Knex): Record<string, ChainVerifier> {
  const quiet = pino({ level: 'silent' });
  const options = { bufferSize: 1, flushIntervalMs: 60_000, enqueueTimeoutMs: 1 };
  return {
    decision_log: createDecisionLog(knex, quiet, options),
    api_audit: createAuditLog(knex, quiet, options),
    tool_audit: createToolAudit(knex, quiet, options),
    worker_audit: createWorkerAudit(knex, quiet, options),
  };
}

/**
 * Verifies one chain: its hashes from its prune cut (or the genesis), then against the
 * checkpoints stored in PostgreSQL and `outside` (those of the sink, if given). Prints one
 * line per finding; returns whether the chain is intact.
 */
export async function verifyChain(knex: Knex, chain: AuditChain, log: ChainVerifier, outside: Checkpoint[]): Promise<boolean> {
  const cut = await readCut(knex, chain);
  const { rows, break: broken } = await log.verify(cut);
  const from = cut ? ` from the prune cut at seq ${cut.seq}` : '';
  if (broken) console.log(`${chain.name}: chain broken at seq ${broken.seq} (${broken.reason}) after checking ${rows} rows${from}`);
  else console.log(`${chain.name}: ${rows} rows, hash chain intact${from}`);
  // The same checkpoint is usually in both places; count it once.
  const all = [...(await storedCheckpoints(knex, chain)), ...outside.filter((cp) => cp.chain === chain.table)];
  const checkpoints = [...new Map(all.map((cp) => [cp.jws, cp])).values()];
  const problems = await checkAgainstCheckpoints(knex, chain, checkpoints, cut);
  for (const problem of problems) console.log(`${chain.name}: ${problem}`);
  if (problems.length === 0 && checkpoints.length > 0) console.log(`${chain.name}: ${checkpoints.length} checkpoints agree`);
  return !broken && problems.length === 0;
}
