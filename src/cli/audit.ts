import pino from 'pino';
import type { Config } from '../config/index.js';
import { createDecisionLog } from '../decisions/index.js';
import { createAuditLog } from '../egress/audit.js';
import { createToolAudit } from '../mcp/audit.js';
import type { Logger } from '../logging/index.js';
import { openDatabase } from '../storage/index.js';
import { UsageError } from './usage.js';

/**
 * `audit verify`: recomputes the hash chains of the decision log, the api.call audit and the tool audit and exits 1 at the first row
 * that was edited, removed or inserted out of order, naming its sequence number.
 */
export async function runAudit(config: Config, logger: Logger, args: string[]): Promise<number> {
  if (args[0] !== 'verify' || args.length > 1) throw new UsageError(`audit takes verify, not '${args.join(' ')}'`);
  const db = await openDatabase(config.database, logger);
  try {
    const quiet = pino({ level: 'silent' });
    const options = { bufferSize: 1, flushIntervalMs: 60_000, enqueueTimeoutMs: 1 };
    const logs = [
      { name: 'decision log', log: createDecisionLog(db.knex, quiet, options) },
      { name: 'api audit', log: createAuditLog(db.knex, quiet, options) },
      { name: 'tool audit', log: createToolAudit(db.knex, quiet, options) },
    ];
    let intact = true;
    for (const { name, log } of logs) {
      const { rows, break: broken } = await log.verify();
      await log.close();
      if (broken) {
        console.log(`${name}: chain broken at seq ${broken.seq} (${broken.reason}) after checking ${rows} rows`);
        intact = false;
      } else {
        console.log(`${name}: ${rows} rows, hash chain intact`);
      }
    }
    return intact ? 0 : 1;
  } finally {
    await db.close();
  }
}
