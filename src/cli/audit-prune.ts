import { AUDIT_CHAINS } from '../audit/chains.js';
import { pruneChain } from '../audit/prune.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { openDatabase } from '../storage/index.js';
import { chainVerifiers, verifyChain } from './audit-chains.js';
import { UsageError } from './usage.js';

/**
 * `audit prune --before DATE`: removes the rows of every hash-chained table written before
 * DATE, cutting each chain at its newest signed checkpoint taken before DATE, so what remains
 * still verifies (from that checkpoint's hash). A chain that does not verify is not pruned and
 * the command exits 1: retention must never erase the evidence of a break.
 */
export async function runAuditPrune(config: Config, logger: Logger, args: string[]): Promise<number> {
  const before = args.length === 2 && args[0] === '--before' ? new Date(args[1]!) : undefined;
  if (!before || Number.isNaN(before.getTime()))
    throw new UsageError(`audit prune takes --before DATE (ISO 8601), not '${args.join(' ')}'`);
  const db = await openDatabase(config.database, logger);
  try {
    const verifiers = chainVerifiers(db.knex);
    let ok = true;
    for (const chain of AUDIT_CHAINS) {
      const log = verifiers[chain.table]!;
      const intact = await verifyChain(db.knex, chain, log, []);
      await log.close();
      if (!intact) {
        console.log(`${chain.name}: not pruned, the chain does not verify`);
        ok = false;
        continue;
      }
      const { removed, checkpoint } = await pruneChain(db.knex, chain, before);
      if (checkpoint) console.log(`${chain.name}: pruned ${removed} rows up to seq ${checkpoint.seq} (checkpoint of ${checkpoint.at})`);
      else console.log(`${chain.name}: nothing to prune (no checkpoint before ${before.toISOString()})`);
    }
    return ok ? 0 : 1;
  } finally {
    await db.close();
  }
}
