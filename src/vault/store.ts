import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { isUuid } from '../lib/ids.js';
import type { Logger } from '../logging/index.js';
import { type Envelope, openSecret, rewrapKey, sealSecret } from './envelope.js';
import type { KeyRing } from './keyring.js';

/** A credential as the admin API shows it: metadata only, never the secret. */
export interface CredentialInfo {
  id: string;
  provider: string;
  name: string;
  owner_user: string | null;
  owner_group: string | null;
  kid: string;
  version: number;
  active: boolean;
  expires_at: string | null;
  created_by: string;
  created_at: string;
  updated_at: string;
  rotated_at: string | null;
  disabled_at: string | null;
}

/** What creating a credential takes (the secret travels no further than the seal). */
export interface NewCredential {
  provider: string;
  name: string;
  secret: string;
  owner_user: string | null;
  owner_group: string | null;
  expires_at: Date | null;
}

/**
 * Provider credentials in PostgreSQL, envelope-encrypted. Only `reveal` ever returns a
 * secret, and only to the egress path that injects it; everything the admin API and the
 * CLI see is metadata.
 */
export interface CredentialStore {
  create(input: NewCredential, by: string): Promise<CredentialInfo>;
  list(): Promise<CredentialInfo[]>;
  get(id: string): Promise<CredentialInfo>;
  rotate(id: string, secret: string): Promise<CredentialInfo>;
  disable(id: string): Promise<CredentialInfo>;
  /** The secret of an active, unexpired credential; refused (403) otherwise. */
  reveal(id: string): Promise<{ info: CredentialInfo; secret: string }>;
  /**
   * The credential a call to `provider` uses: an active one, the user's own first, then the
   * group's, then one owned by no one. Refused (403) with the
   * state of the best candidate when none is usable, `credential_missing` when none exists.
   */
  revealFor(provider: string, owner: { user: string | null; group: string | null }): Promise<{ info: CredentialInfo; secret: string }>;
  /** Re-wraps every data key still under an older master key; returns how many moved. */
  rewrapAll(): Promise<number>;
}

interface Row {
  id: string;
  provider: string;
  name: string;
  owner_user: string | null;
  owner_group: string | null;
  kid: string;
  wrapped_key: Buffer;
  sealed_secret: Buffer;
  version: number;
  active: boolean;
  expires_at: Date | null;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  rotated_at: Date | null;
  disabled_at: Date | null;
}

const CANDIDATES_TTL_MS = 1000;
const iso = (d: Date | null) => (d === null ? null : new Date(d).toISOString());
const envelopeOf = (r: Row): Envelope => ({
  kid: r.kid,
  wrappedKey: Buffer.from(r.wrapped_key),
  sealedSecret: Buffer.from(r.sealed_secret),
});

export function createCredentialStore(deps: { knex: Knex; ring: KeyRing; logger: Logger; now?: () => Date }): CredentialStore {
  const log = deps.logger.child({ component: 'vault' });
  const now = deps.now ?? (() => new Date());
  const info = (r: Row): CredentialInfo => ({
    id: r.id,
    provider: r.provider,
    name: r.name,
    owner_user: r.owner_user,
    owner_group: r.owner_group,
    kid: r.kid,
    version: r.version,
    active: r.active && (r.expires_at === null || new Date(r.expires_at) > now()),
    expires_at: iso(r.expires_at),
    created_by: r.created_by,
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
    rotated_at: iso(r.rotated_at),
    disabled_at: iso(r.disabled_at),
  });
  const unsealed = new Map<string, string>();
  const candidates = new Map<string, { at: number; rows: Row[] }>();
  const candidatesFor = async (provider: string, owner: { user: string | null; group: string | null }) =>
    (await deps
      .knex('credentials')
      .where({ provider })
      .andWhere((q) => {
        q.where((n) => n.whereNull('owner_user').whereNull('owner_group'));
        if (owner.user) q.orWhere({ owner_user: owner.user });
        if (owner.group) q.orWhere((g) => g.whereNull('owner_user').andWhere({ owner_group: owner.group }));
      })
      .select('*')) as Row[];
  const pick = (provider: string, rows: Row[]) => {
    const rank = (r: Row) => (r.owner_user !== null ? 0 : r.owner_group !== null ? 1 : 2);
    const ordered = [...rows].sort(
      (a, b) => Number(info(b).active) - Number(info(a).active) || rank(a) - rank(b) || +new Date(b.created_at) - +new Date(a.created_at),
    );
    const row = ordered[0];
    if (!row)
      throw new GatewayError('credential_missing', `no ${provider} credential is stored for this caller`, {
        reasons: ['credential_missing'],
      });
    const meta = info(row);
    if (!row.active)
      throw new GatewayError('credential_disabled', `the ${provider} credential ${row.id} is disabled`, {
        reasons: ['credential_disabled'],
      });
    if (!meta.active)
      throw new GatewayError('credential_expired', `the ${provider} credential ${row.id} expired at ${meta.expires_at}`, {
        reasons: ['credential_expired'],
      });
    // Unsealing costs two AES-GCM operations; a rotation bumps the version, a rewrap the kid.
    const cacheKey = `${row.id}:${row.version}:${row.kid}`;
    let secret = unsealed.get(cacheKey);
    if (secret === undefined) {
      secret = openSecret(deps.ring, row.id, row.version, envelopeOf(row));
      if (unsealed.size >= 256) unsealed.delete(unsealed.keys().next().value!);
      unsealed.set(cacheKey, secret);
    }
    return { info: meta, secret };
  };
  const load = async (id: string, trx: Knex | Knex.Transaction = deps.knex, lock = false) => {
    const query = trx('credentials').where({ id });
    if (lock) query.forUpdate();
    const row = isUuid(id) ? ((await query.first()) as Row | undefined) : undefined;
    if (!row) throw new GatewayError('credential_not_found', `no credential with id '${id.slice(0, 64)}'`);
    return row;
  };

  return {
    async create(input, by) {
      const id = randomUUID();
      const at = now();
      const env = sealSecret(deps.ring, id, 1, input.secret);
      const exists = await deps.knex('credentials').where({ provider: input.provider, name: input.name }).first('id');
      if (exists)
        throw new GatewayError('credential_exists', `a credential named '${input.name}' exists for ${input.provider}; rotate it instead`);
      const [row] = (await deps
        .knex('credentials')
        .insert({
          id,
          provider: input.provider,
          name: input.name,
          owner_user: input.owner_user,
          owner_group: input.owner_group,
          kid: env.kid,
          wrapped_key: env.wrappedKey,
          sealed_secret: env.sealedSecret,
          version: 1,
          active: true,
          expires_at: input.expires_at,
          created_by: by,
          created_at: at,
          updated_at: at,
        })
        .returning('*')) as Row[];
      candidates.clear();
      log.info({ id, provider: input.provider, name: input.name, kid: env.kid, by }, 'credential created');
      return info(row!);
    },
    async list() {
      return ((await deps.knex('credentials').select('*').orderBy(['provider', 'name'])) as Row[]).map(info);
    },
    async get(id) {
      return info(await load(id));
    },
    async rotate(id, secret) {
      const row = await deps.knex.transaction(async (trx) => {
        const current = await load(id, trx, true);
        const version = current.version + 1;
        const env = sealSecret(deps.ring, id, version, secret);
        const at = now();
        const [updated] = (await trx('credentials')
          .where({ id })
          .update({ kid: env.kid, wrapped_key: env.wrappedKey, sealed_secret: env.sealedSecret, version, updated_at: at, rotated_at: at })
          .returning('*')) as Row[];
        return updated!;
      });
      candidates.clear();
      log.info({ id, version: row.version, kid: row.kid }, 'credential rotated');
      return info(row);
    },
    async disable(id) {
      await load(id);
      const at = now();
      const [row] = (await deps
        .knex('credentials')
        .where({ id })
        .update({ active: false, disabled_at: deps.knex.raw('coalesce(disabled_at, ?)', [at]), updated_at: at })
        .returning('*')) as Row[];
      candidates.clear();
      log.info({ id }, 'credential disabled');
      return info(row!);
    },
    async reveal(id) {
      const row = await load(id);
      const meta = info(row);
      if (!row.active) throw new GatewayError('credential_disabled', `credential ${id} is disabled`);
      if (!meta.active) throw new GatewayError('credential_expired', `credential ${id} expired at ${meta.expires_at}`);
      return { info: meta, secret: openSecret(deps.ring, id, row.version, envelopeOf(row)) };
    },
    async revealFor(provider, owner) {
      // The candidates are read at most once a second per caller class; this replica's own
      // create, rotate and disable drop them at once, other replicas' within that second.
      const cacheKey = JSON.stringify([provider, owner.user, owner.group]);
      const cached = candidates.get(cacheKey);
      const rows = cached && cached.at > Date.now() - CANDIDATES_TTL_MS ? cached.rows : await candidatesFor(provider, owner);
      if (rows !== cached?.rows) {
        if (candidates.size >= 1024) candidates.clear();
        candidates.set(cacheKey, { at: Date.now(), rows });
      }
      return pick(provider, rows);
    },
    async rewrapAll() {
      let moved = 0;
      for (;;) {
        const batch = await deps.knex.transaction(async (trx) => {
          const rows = (await trx('credentials').whereNot({ kid: deps.ring.current.kid }).limit(100).forUpdate().skipLocked()) as Row[];
          for (const row of rows) {
            const env = rewrapKey(deps.ring, row.id, envelopeOf(row));
            await trx('credentials').where({ id: row.id }).update({ kid: env.kid, wrapped_key: env.wrappedKey, updated_at: now() });
          }
          return rows.length;
        });
        moved += batch;
        if (batch === 0) break;
      }
      candidates.clear();
      log.info({ moved, kid: deps.ring.current.kid }, 'credentials re-wrapped under the current master key');
      return moved;
    },
  };
}
