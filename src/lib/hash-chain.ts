import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';

/** The `prev_hash` of the first row of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * The hash of one chained record: SHA-256 over the previous hash and the record's canonical JSON.
 * The writers have the database compute the same bytes (`cynode_chain_append`: the hex SHA-256
 * of the UTF-8 of `prev || '\n' || canonical JSON`); this one is what `verify` recomputes.
 */
export function chainHash(prevHash: string, record: unknown): string {
  // One update of the joined text: the same bytes as three, one crossing into native code.
  return createHash('sha256')
    .update(`${prevHash}\n${canonicalJson(record)}`)
    .digest('hex');
}

/** Where a chain stops verifying. */
export interface ChainBreak {
  seq: string;
  reason: 'hash_mismatch' | 'link_broken';
}

/**
 * Walks records in order and returns the first break: a row whose stored hash does not match
 * its content (edited), or whose `prev_hash` is not the previous row's hash (a row removed or
 * inserted). Returns undefined for an intact chain.
 */
export function findChainBreak(
  rows: Iterable<{ seq: string; prevHash: string; hash: string; record: unknown }>,
  start = GENESIS_HASH,
): ChainBreak | undefined {
  let expectedPrev = start;
  for (const row of rows) {
    if (row.prevHash !== expectedPrev) return { seq: row.seq, reason: 'link_broken' };
    if (chainHash(row.prevHash, row.record) !== row.hash) return { seq: row.seq, reason: 'hash_mismatch' };
    expectedPrev = row.hash;
  }
  return undefined;
}
