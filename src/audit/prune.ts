import type { Knex } from 'knex';
import type { AuditChain } from './chains.js';
import { type Checkpoint, checkpointFromRow, checkpointSignatureValid } from './checkpoint.js';
import { readCut } from './verify.js';

/** What pruning one chain did: the rows removed and the checkpoint the chain now starts from. */
export interface PruneResult {
  removed: number;
  checkpoint: Checkpoint | undefined;
}

/**
 * Removes the rows of `chain` written before `before`, cutting only at a signed checkpoint:
 * the newest one taken before `before` (so every row it covers is older) and past the current
 * cut. Its row must still carry the checkpoint's hash; then the cut moves to it and the rows
 * up to it are deleted, in one transaction, and the rest verifies from the checkpoint's hash.
 * Callers verify the chain first: pruning never hides a break, it only ends where one was.
 */
export async function pruneChain(knex: Knex, chain: AuditChain, before: Date): Promise<PruneResult> {
  const cut = await readCut(knex, chain);
  const row = (await knex('audit_checkpoints')
    .where({ chain: chain.table })
    .andWhere('at', '<', before)
    .andWhere('seq', '>', cut?.seq ?? 0)
    .orderBy('seq', 'desc')
    .first()) as Parameters<typeof checkpointFromRow>[0] & { id: string };
  if (!row) return { removed: 0, checkpoint: undefined };
  const checkpoint = checkpointFromRow(row);
  if (!(await checkpointSignatureValid(checkpoint))) throw new Error(`${chain.name}: checkpoint ${row.id} has an invalid signature`);
  const removed = await knex.transaction<number>(async (trx) => {
    const head = (await trx(chain.table).where({ seq: checkpoint.seq }).first('hash')) as { hash: string } | undefined;
    if (head?.hash !== checkpoint.hash) throw new Error(`${chain.name}: seq ${checkpoint.seq} no longer matches its checkpoint`);
    await trx('audit_prune_cuts')
      .insert({ chain: chain.table, seq: checkpoint.seq, hash: checkpoint.hash, checkpoint_id: row.id, pruned_at: trx.fn.now() })
      .onConflict('chain')
      .merge();
    return Number(await trx(chain.table).where('seq', '<=', checkpoint.seq).del());
  });
  return { removed, checkpoint };
}
