import type { Knex } from 'knex';
import { errorMessage } from '../lib/error-message.js';
import type { KeyStore } from '../keys/index.js';
import type { Logger } from '../logging/index.js';
import { AUDIT_CHAINS } from './chains.js';
import { type Checkpoint, checkpointRow, readHeads, signCheckpoint } from './checkpoint.js';
import type { CheckpointSink } from './sink.js';

/** Takes checkpoints: signs every chain's head and writes it to PostgreSQL and to the sink. */
export interface Checkpointer {
  /** One checkpoint of every non-empty chain; resolves with what was signed (even if a write failed, which is logged). */
  checkpoint(): Promise<Checkpoint[]>;
}

/** What a checkpointer needs: the database, this replica's signing key, the outside sink (if any). */
export interface CheckpointerDeps {
  knex: Knex;
  keys: Pick<KeyStore, 'current'>;
  sink: CheckpointSink | null;
  logger: Logger;
}

/**
 * Creates the checkpointer. The two writes are independent: a sink that is down does not
 * lose the PostgreSQL copy, nor the other way round. (Heads are read from PostgreSQL, so with
 * the database down there is nothing to checkpoint and the call fails.)
 */
export function createCheckpointer(deps: CheckpointerDeps): Checkpointer {
  const log = deps.logger.child({ component: 'audit-checkpoints' });
  return {
    async checkpoint() {
      const heads = (await readHeads(deps.knex, AUDIT_CHAINS)).filter((h) => h.seq !== '0');
      if (heads.length === 0) return [];
      const key = deps.keys.current();
      const checkpoints = await Promise.all(heads.map((h) => signCheckpoint(h, key)));
      const writes = [
        deps.knex('audit_checkpoints').insert(checkpoints.map(checkpointRow)),
        deps.sink?.write(checkpoints) ?? Promise.resolve(),
      ];
      const [stored, sent] = await Promise.allSettled(writes);
      if (stored?.status === 'rejected') log.error({ err: errorMessage(stored.reason) }, 'audit checkpoint not stored in PostgreSQL');
      if (sent?.status === 'rejected') log.error({ err: errorMessage(sent.reason) }, 'audit checkpoint not written to the sink');
      log.debug({ heads: checkpoints.map((c) => `${c.chain}@${c.seq}`) }, 'audit checkpoint taken');
      return checkpoints;
    },
  };
}
