import type { Knex } from 'knex';
import type { ChainStart } from '../lib/chained-log.js';
import type { AuditChain } from './chains.js';
import { type Checkpoint, checkpointFromRow, checkpointSignatureValid } from './checkpoint.js';

/** A chain's prune cut: where its remaining rows start, and the checkpoint it was cut at. */
export interface PruneCut extends ChainStart {
  checkpoint: Checkpoint;
}

/** The prune cut of `chain`, if it was ever pruned. */
export async function readCut(knex: Knex, chain: AuditChain): Promise<PruneCut | undefined> {
  const row = (await knex('audit_prune_cuts as c')
    .join('audit_checkpoints as k', 'k.id', 'c.checkpoint_id')
    .where('c.chain', chain.table)
    .first('c.seq as cut_seq', 'c.hash as cut_hash', 'k.*')) as
    (Parameters<typeof checkpointFromRow>[0] & { cut_seq: string; cut_hash: string }) | undefined;
  return row && { seq: String(row.cut_seq), hash: row.cut_hash, checkpoint: checkpointFromRow(row) };
}

/** The checkpoints of `chain` stored in PostgreSQL. */
export async function storedCheckpoints(knex: Knex, chain: AuditChain): Promise<Checkpoint[]> {
  const rows = (await knex('audit_checkpoints').where({ chain: chain.table }).orderBy('id').select()) as Parameters<
    typeof checkpointFromRow
  >[0][];
  return rows.map(checkpointFromRow);
}

/**
 * Holds `chain` to its checkpoints and its prune cut, and returns what does not agree, one
 * sentence each: a checkpoint whose signature fails; a checkpoint past the chain's newest row
 * (the newest rows were truncated); a checkpoint whose row is missing or carries another hash
 * (the chain was rewritten); a cut that is not the checkpoint it claims. Checkpoints at or
 * below the cut name rows that were pruned and are not looked for.
 */
export async function checkAgainstCheckpoints(
  knex: Knex,
  chain: AuditChain,
  checkpoints: Checkpoint[],
  cut: PruneCut | undefined,
): Promise<string[]> {
  const problems: string[] = [];
  if (cut && (cut.checkpoint.seq !== cut.seq || cut.checkpoint.hash !== cut.hash || !(await checkpointSignatureValid(cut.checkpoint))))
    problems.push(`prune cut at seq ${cut.seq} does not match its signed checkpoint`);
  const mine = checkpoints.filter((cp) => cp.chain === chain.table);
  const valid: Checkpoint[] = [];
  for (const cp of mine) {
    if (await checkpointSignatureValid(cp)) valid.push(cp);
    else problems.push(`checkpoint at seq ${cp.seq} of ${cp.at} has an invalid signature`);
  }
  const cutSeq = BigInt(cut?.seq ?? 0);
  const wanted = valid.filter((cp) => BigInt(cp.seq) > cutSeq || (cut !== undefined && BigInt(cp.seq) === cutSeq));
  // One array parameter: a year of checkpoints is more seqs than a statement may have parameters.
  const rows = (await knex(chain.table)
    .whereRaw('seq = ANY(?::bigint[])', [[...new Set(wanted.map((cp) => cp.seq))]])
    .select('seq', 'hash')) as { seq: string; hash: string }[];
  const hashes = new Map(rows.map((r) => [String(r.seq), r.hash]));
  const newest = (await knex(chain.table).max('seq as seq').first()) as { seq: string | null } | undefined;
  const end = BigInt(newest?.seq ?? cut?.seq ?? 0);
  for (const cp of wanted) {
    if (cut && BigInt(cp.seq) === cutSeq) {
      if (cp.hash !== cut.hash) problems.push(`rewritten at seq ${cp.seq}: the prune cut's hash differs from the checkpoint of ${cp.at}`);
      continue;
    }
    const hash = hashes.get(cp.seq);
    if (hash === undefined && BigInt(cp.seq) > end)
      problems.push(`truncated: the checkpoint of ${cp.at} names seq ${cp.seq}, the chain ends at seq ${end}`);
    else if (hash === undefined) problems.push(`rewritten: seq ${cp.seq}, named by the checkpoint of ${cp.at}, is missing`);
    else if (hash !== cp.hash) problems.push(`rewritten at seq ${cp.seq}: its hash differs from the checkpoint of ${cp.at}`);
  }
  return problems;
}
