import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import type { PskConstraints } from './psk-constraints.js';

/** A PSK as the admin API shows it: metadata only, never the secret. */
export interface PskInfo {
  id: string;
  name: string;
  createdBy: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  active: boolean;
  /** What the PSK may register (the register policy enforces it); null: any node. */
  constraints: PskConstraints | null;
}

/** The PSK a registration presented, as the register policy sees it (`input.subject.psk`): never its secret or digest. */
export interface PskSubject {
  id: string;
  name: string;
  constraints: PskConstraints | null;
}

/** A freshly created PSK: the only time its secret exists outside the caller's hands. */
export interface CreatedPsk extends PskInfo {
  secret: string;
}

/**
 * Pre-shared keys for worker registration. A key reads `cynpsk_<id>_<secret>`: the id
 * selects the row without a scan, and only the SHA-256 of the 256-bit secret is stored,
 * compared in constant time. Several keys can be active at once, each with its own expiry,
 * so a new key can be rolled out before the old one is revoked.
 */
export interface PskStore {
  create(input: { name: string; expiresAt: Date | null; createdBy: string; constraints?: PskConstraints | null }): Promise<CreatedPsk>;
  list(): Promise<PskInfo[]>;
  revoke(id: string): Promise<PskInfo>;
  /** The active PSK `presented` is, or null for anything else (never a reason why). */
  verify(presented: string): Promise<PskSubject | null>;
  /** The PSK with id `id`, active or not (a registered worker's capability update is still held to its scope). */
  subject(id: string): Promise<PskSubject | null>;
}

const FORMAT = /^cynpsk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

interface Row {
  id: string;
  name: string;
  secret_sha256: Buffer;
  created_by: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  constraints: PskConstraints | null;
}

/** Creates the PSK store over `psks`: secrets are shown once at creation, only their digests kept. */
export function createPskStore(knex: Knex, now: () => Date = () => new Date()): PskStore {
  const info = (r: Row): PskInfo => ({
    id: r.id,
    name: r.name,
    createdBy: r.created_by,
    createdAt: iso(r.created_at)!,
    expiresAt: iso(r.expires_at),
    revokedAt: iso(r.revoked_at),
    lastUsedAt: iso(r.last_used_at),
    active: r.revoked_at === null && (r.expires_at === null || new Date(r.expires_at) > now()),
    constraints: r.constraints ?? null,
  });
  const subject = (r: Row): PskSubject => ({ id: r.id, name: r.name, constraints: r.constraints ?? null });
  // A digest to compare against when the id is unknown, so timing does not reveal ids.
  const decoy = sha256(randomBytes(32).toString('base64url'));

  return {
    async create({ name, expiresAt, createdBy, constraints = null }) {
      const id = randomBytes(8).toString('hex').slice(0, 12);
      const secret = randomBytes(32).toString('base64url');
      const [row] = (await knex('psks')
        .insert({
          id,
          name,
          secret_sha256: sha256(secret),
          created_by: createdBy,
          created_at: now(),
          expires_at: expiresAt,
          constraints: constraints === null ? null : JSON.stringify(constraints),
        })
        .returning('*')) as Row[];
      return { ...info(row!), secret: `cynpsk_${id}_${secret}` };
    },
    async list() {
      const rows = (await knex('psks').select('*').orderBy('created_at', 'desc')) as Row[];
      return rows.map(info);
    },
    async revoke(id) {
      if (!/^[a-z0-9]{12}$/.test(id)) throw new GatewayError('psk_not_found', 'no PSK with this id');
      const [row] = (await knex('psks')
        .where({ id })
        .update({ revoked_at: knex.raw('coalesce(revoked_at, ?)', [now()]) })
        .returning('*')) as Row[];
      if (!row) throw new GatewayError('psk_not_found', `no PSK with id '${id}'`);
      return info(row);
    },
    async verify(presented) {
      const m = FORMAT.exec(presented);
      const row = m ? ((await knex('psks').where({ id: m[1] }).first()) as Row | undefined) : undefined;
      const expected = row ? Buffer.from(row.secret_sha256) : decoy;
      const matches = timingSafeEqual(expected, sha256(m?.[2] ?? presented));
      if (!row || !matches || !info(row).active) return null;
      await knex('psks').where({ id: row.id }).update({ last_used_at: now() });
      return subject(row);
    },
    async subject(id) {
      const row = (await knex('psks').where({ id }).first()) as Row | undefined;
      return row ? subject(row) : null;
    },
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function iso(d: Date | string | null): string | null {
  return d === null ? null : new Date(d).toISOString();
}
