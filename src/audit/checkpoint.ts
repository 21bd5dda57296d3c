import { CompactSign, compactVerify, importJWK, type JWK } from 'jose';
import type { Knex } from 'knex';
import { canonicalJson } from '../lib/canonical-json.js';
import { GENESIS_HASH } from '../lib/hash-chain.js';
import { JWT_ALG, type PublishedKey } from '../keys/index.js';
import type { AuditChain } from './chains.js';

/** The JWS `typ` of a checkpoint signature. */
export const CHECKPOINT_TYPE = 'cynode-checkpoint+jws';

/** A chain's head at one moment: its newest row's sequence number and hash (0 and the genesis hash when empty). */
export interface ChainHead {
  chain: string;
  seq: string;
  hash: string;
  at: string;
}

/**
 * A signed chain head, as it is stored and sent to the sink (one JSON line). `jws` signs the
 * head's canonical JSON with the gateway's signing key `kid`; `jwk` is that key's public half,
 * carried along because signing keys rotate away long before audit rows are pruned.
 */
export interface Checkpoint extends ChainHead {
  kid: string;
  jwk: JWK;
  jws: string;
}

/** The heads of `chains` now, read one table at a time (each head is exact for its own table). */
export async function readHeads(knex: Knex, chains: readonly AuditChain[]): Promise<ChainHead[]> {
  const heads: ChainHead[] = [];
  for (const chain of chains) {
    const row = (await knex(chain.table).orderBy('seq', 'desc').first('seq', 'hash')) as { seq: string; hash: string } | undefined;
    heads.push({ chain: chain.table, seq: String(row?.seq ?? 0), hash: row?.hash ?? GENESIS_HASH, at: new Date().toISOString() });
  }
  return heads;
}

const signed = (head: ChainHead) => canonicalJson({ chain: head.chain, seq: head.seq, hash: head.hash, at: head.at });

/** Signs `head` with `key`. */
export async function signCheckpoint(head: ChainHead, key: PublishedKey): Promise<Checkpoint> {
  const jws = await new CompactSign(new TextEncoder().encode(signed(head)))
    .setProtectedHeader({ alg: JWT_ALG, kid: key.kid, typ: CHECKPOINT_TYPE })
    .sign(key.privateKey);
  return { ...head, kid: key.kid, jwk: key.publicJwk, jws };
}

/** Public keys already imported, by their JWK's JSON: a verify run meets each replica's few keys many times. */
const imported = new Map<string, ReturnType<typeof importJWK>>();

/** True when `cp.jws` is a valid signature by `cp.jwk` over exactly the head `cp` states. */
export async function checkpointSignatureValid(cp: Checkpoint): Promise<boolean> {
  try {
    if (cp.jwk.kid !== cp.kid) return false;
    const json = JSON.stringify(cp.jwk);
    if (!imported.has(json)) imported.set(json, importJWK(cp.jwk, JWT_ALG));
    const { payload, protectedHeader } = await compactVerify(cp.jws, await imported.get(json)!, { algorithms: [JWT_ALG] });
    return protectedHeader.typ === CHECKPOINT_TYPE && protectedHeader.kid === cp.kid && new TextDecoder().decode(payload) === signed(cp);
  } catch {
    return false;
  }
}

/** A row of `audit_checkpoints`. */
interface CheckpointRow {
  chain: string;
  seq: string | number;
  hash: string;
  at: Date;
  kid: string;
  public_jwk: JWK;
  jws: string;
}

/** The stored form of a checkpoint. */
export const checkpointRow = (cp: Checkpoint) => ({
  chain: cp.chain,
  seq: cp.seq,
  hash: cp.hash,
  at: cp.at,
  kid: cp.kid,
  public_jwk: JSON.stringify(cp.jwk),
  jws: cp.jws,
});

/** A checkpoint as read back from `audit_checkpoints`. */
export const checkpointFromRow = (r: CheckpointRow): Checkpoint => ({
  chain: r.chain,
  seq: String(r.seq),
  hash: r.hash,
  at: new Date(r.at).toISOString(),
  kid: r.kid,
  jwk: r.public_jwk,
  jws: r.jws,
});
