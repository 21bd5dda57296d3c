import pino from 'pino';
import type { Config } from '../config/index.js';
import { createDecisionLog } from '../decisions/index.js';
import type { Logger } from '../logging/index.js';
import { openDatabase } from '../storage/index.js';
import { UsageError } from './usage.js';

/**
 * `audit verify`: recomputes the decision log's hash chain and exits 1 at the first row
 * that was edited, removed or inserted out of order, naming its sequence number.
 */
export async function runAudit(config: Config, logger: Logger, args: string[]): Promise<number> {
  if (args[0] !== 'verify' || args.length > 1) throw new UsageError(`audit takes verify, not '${args.join(' ')}'`);
  const db = await openDatabase(config.database, logger);
  try {
    const log = createDecisionLog(db.knex, pino({ level: 'silent' }), { bufferSize: 1, flushIntervalMs: 60_000, enqueueTimeoutMs: 1 });
    const { rows, break: broken } = await log.verify();
    await log.close();
    if (broken) {
      console.log(`decision log: chain broken at seq ${broken.seq} (${broken.reason}) after checking ${rows} rows`);
      return 1;
    }
    console.log(`decision log: ${rows} rows, hash chain intact`);
    return 0;
  } finally {
    await db.close();
  }
}
