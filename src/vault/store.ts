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

/** What every credential operation shares: the database, the keys, and this replica's caches. */
interface StoreDeps {
  knex: Knex;
  ring: KeyRing;
  log: Logger;
  now: () => Date;
  /** Opened secrets by `id:version:kid`, at most 256. */
  unsealed: Map<string, string>;
  /** `revealFor` candidate rows by caller class, read at most once a second. */
  candidates: Map<string, { at: number; rows: Row[] }>;
}

type Owner = { user: string | null; group: string | null };

const infoOf = (d: StoreDeps, r: Row): CredentialInfo => ({
  id: r.id,
  provider: r.provider,
  name: r.name,
  owner_user: r.owner_user,
  owner_group: r.owner_group,
  kid: r.kid,
  version: r.version,
  active: r.active && (r.expires_at === null || new Date(r.expires_at) > d.now()),
  expires_at: iso(r.expires_at),
  created_by: r.created_by,
  created_at: iso(r.created_at)!,
  updated_at: iso(r.updated_at)!,
  rotated_at: iso(r.rotated_at),
  disabled_at: iso(r.disabled_at),
});

const candidatesFor = async (d: StoreDeps, provider: string, owner: Owner) =>
  (await d
    .knex('credentials')
    .where({ provider })
    .andWhere((q) => {
      q.where((n) => n.whereNull('owner_user').whereNull('owner_group'));
      if (owner.user) q.orWhere({ owner_user: owner.user });
      if (owner.group) q.orWhere((g) => g.whereNull('owner_user').andWhere({ owner_group: owner.group }));
    })
    .select('*')) as Row[];

// The best candidate: active first, then the user's own, the group's, no one's; newest first.
const pick = (d: StoreDeps, provider: string, rows: Row[]) => {
  const rank = (r: Row) => (r.owner_user !== null ? 0 : r.owner_group !== null ? 1 : 2);
  const ordered = [...rows].sort(
    (a, b) =>
      Number(infoOf(d, b).active) - Number(infoOf(d, a).active) || rank(a) - rank(b) || +new Date(b.created_at) - +new Date(a.created_at),
  );
  const row = ordered[0];
  if (!row)
    throw new GatewayError('credential_missing', `no ${provider} credential is stored for this caller`, {
      reasons: ['credential_missing'],
    });
  const meta = infoOf(d, row);
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
  let secret = d.unsealed.get(cacheKey);
  if (secret === undefined) {
    secret = openSecret(d.ring, row.id, row.version, envelopeOf(row));
    if (d.unsealed.size >= 256) d.unsealed.delete(d.unsealed.keys().next().value!);
    d.unsealed.set(cacheKey, secret);
  }
  return { info: meta, secret };
};

const load = async (d: StoreDeps, id: string, trx: Knex | Knex.Transaction = d.knex, lock = false) => {
  const query = trx('credentials').where({ id });
  if (lock) query.forUpdate();
  const row = isUuid(id) ? ((await query.first()) as Row | undefined) : undefined;
  if (!row) throw new GatewayError('credential_not_found', `no credential with id '${id.slice(0, 64)}'`);
  return row;
};

async function createCredential(d: StoreDeps, input: NewCredential, by: string): Promise<CredentialInfo> {
  const id = randomUUID();
  const at = d.now();
  const env = sealSecret(d.ring, id, 1, input.secret);
  const exists = await d.knex('credentials').where({ provider: input.provider, name: input.name }).first('id');
  if (exists)
    throw new GatewayError('credential_exists', `a credential named '${input.name}' exists for ${input.provider}; rotate it instead`);
  const [row] = (await d
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
  d.candidates.clear();
  d.log.info({ id, provider: input.provider, name: input.name, kid: env.kid, by }, 'credential created');
  return infoOf(d, row!);
}

async function rotateCredential(d: StoreDeps, id: string, secret: string): Promise<CredentialInfo> {
  const row = await d.knex.transaction(async (trx) => {
    const current = await load(d, id, trx, true);
    const version = current.version + 1;
    const env = sealSecret(d.ring, id, version, secret);
    const at = d.now();
    const [updated] = (await trx('credentials')
      .where({ id })
      .update({ kid: env.kid, wrapped_key: env.wrappedKey, sealed_secret: env.sealedSecret, version, updated_at: at, rotated_at: at })
      .returning('*')) as Row[];
    return updated!;
  });
  d.candidates.clear();
  d.log.info({ id, version: row.version, kid: row.kid }, 'credential rotated');
  return infoOf(d, row);
}

async function disableCredential(d: StoreDeps, id: string): Promise<CredentialInfo> {
  await load(d, id);
  const at = d.now();
  const [row] = (await d
    .knex('credentials')
    .where({ id })
    .update({ active: false, disabled_at: d.knex.raw('coalesce(disabled_at, ?)', [at]), updated_at: at })
    .returning('*')) as Row[];
  d.candidates.clear();
  d.log.info({ id }, 'credential disabled');
  return infoOf(d, row!);
}

async function revealCredential(d: StoreDeps, id: string): Promise<{ info: CredentialInfo; secret: string }> {
  const row = await load(d, id);
  const meta = infoOf(d, row);
  if (!row.active) throw new GatewayError('credential_disabled', `credential ${id} is disabled`);
  if (!meta.active) throw new GatewayError('credential_expired', `credential ${id} expired at ${meta.expires_at}`);
  return { info: meta, secret: openSecret(d.ring, id, row.version, envelopeOf(row)) };
}

async function revealForOwner(d: StoreDeps, provider: string, owner: Owner): Promise<{ info: CredentialInfo; secret: string }> {
  // The candidates are read at most once a second per caller class; this replica's own
  // create, rotate and disable drop them at once, other replicas' within that second.
  const cacheKey = JSON.stringify([provider, owner.user, owner.group]);
  const cached = d.candidates.get(cacheKey);
  const rows = cached && cached.at > Date.now() - CANDIDATES_TTL_MS ? cached.rows : await candidatesFor(d, provider, owner);
  if (rows !== cached?.rows) {
    if (d.candidates.size >= 1024) d.candidates.clear();
    d.candidates.set(cacheKey, { at: Date.now(), rows });
  }
  return pick(d, provider, rows);
}

async function rewrapAll(d: StoreDeps): Promise<number> {
  let moved = 0;
  for (;;) {
    const batch = await d.knex.transaction(async (trx) => {
      const rows = (await trx('credentials').whereNot({ kid: d.ring.current.kid }).limit(100).forUpdate().skipLocked()) as Row[];
      for (const row of rows) {
        const env = rewrapKey(d.ring, row.id, envelopeOf(row));
        await trx('credentials').where({ id: row.id }).update({ kid: env.kid, wrapped_key: env.wrappedKey, updated_at: d.now() });
      }
      return rows.length;
    });
    moved += batch;
    if (batch === 0) break;
  }
  d.candidates.clear();
  d.log.info({ moved, kid: d.ring.current.kid }, 'credentials re-wrapped under the current master key');
  return moved;
}

/** The credential store over `credentials`, with this replica's unsealed-secret and candidate caches. */
export function createCredentialStore(deps: { knex: Knex; ring: KeyRing; logger: Logger; now?: () => Date }): CredentialStore {
  const d: StoreDeps = {
    knex: deps.knex,
    ring: deps.ring,
    log: deps.logger.child({ component: 'vault' }),
    now: deps.now ?? (() => new Date()),
    unsealed: new Map(),
    candidates: new Map(),
  };
  return {
    create: (input, by) => createCredential(d, input, by),
    list: async () => ((await d.knex('credentials').select('*').orderBy(['provider', 'name'])) as Row[]).map((r) => infoOf(d, r)),
    get: async (id) => infoOf(d, await load(d, id)),
    rotate: (id, secret) => rotateCredential(d, id, secret),
    disable: (id) => disableCredential(d, id),
    reveal: (id) => revealCredential(d, id),
    revealFor: (provider, owner) => revealForOwner(d, provider, owner),
    rewrapAll: () => rewrapAll(d),
  };
}
