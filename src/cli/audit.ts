import { AUDIT_CHAINS } from '../audit/chains.js';
import { readCheckpoints } from '../audit/sink.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { openDatabase } from '../storage/index.js';
import { chainVerifiers, verifyChain } from './audit-chains.js';
import { runAuditPrune } from './audit-prune.js';
import { UsageError } from './usage.js';

/**
 * `audit verify [--checkpoints FILE|URL]`: recomputes the hash chains of the decision log, the
 * api.call audit and the tool audit, and holds each to its signed checkpoints (PostgreSQL's,
 * and the outside sink's when named), exiting 1 at a row that was edited, removed, inserted
 * out of order, or truncated from the end. `audit prune --before DATE`: see `audit-prune.ts`.
 */
export async function runAudit(config: Config, logger: Logger, args: string[]): Promise<number> {
  if (args[0] === 'prune') return runAuditPrune(config, logger, args.slice(1));
  const withCheckpoints = args.length === 3 && args[1] === '--checkpoints';
  if (args[0] !== 'verify' || (args.length > 1 && !withCheckpoints))
    throw new UsageError(`audit takes 'verify [--checkpoints FILE|URL]' or 'prune --before DATE', not '${args.join(' ')}'`);
  const outside = withCheckpoints ? await readCheckpoints(args[2]!) : [];
  const db = await openDatabase(config.database, logger);
  try {
    const verifiers = chainVerifiers(db.knex);
    let intact = true;
    for (const chain of AUDIT_CHAINS) {
      const log = verifiers[chain.table]!;
      if (!(await verifyChain(db.knex, chain, log, outside))) intact = false;
      await log.close();
    }
    return intact ? 0 : 1;
  } finally {
    await db.close();
  }
}
