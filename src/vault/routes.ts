import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { defineRoutes } from '../server/route.js';
import type { CredentialStore, NewCredential } from './store.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;
const FIELDS = ['provider', 'name', 'secret', 'owner_user', 'owner_group', 'expires_at'];

const CONTROL = ['control'] as const;

/**
 * Admin routes: `POST|GET /v1/credentials`, `GET /v1/credentials/{id}`,
 * `POST /v1/credentials/{id}/rotate`, `POST /v1/credentials/{id}/disable`. Secrets go in,
 * never out: every answer is metadata.
 */
export const CREDENTIAL_ROUTES = defineRoutes<CredentialStore>([
  {
    method: 'post',
    path: '/v1/credentials',
    roles: CONTROL,
    access: 'admin',
    summary: 'Stores a provider credential (envelope-encrypted; never returned).',
    body: { schema: 'NewCredential', invalid: 'credential_invalid' },
    ok: { 201: { description: 'Metadata', schema: 'Any' } },
    errors: ['credential_invalid', 'credential_exists', 'vault_unavailable'],
    db: true,
    async handler(ctx, store) {
      const input = parseNew(ctx.state.body);
      ctx.status = 201;
      ctx.body = await store.create(input, (ctx.state.principal as Principal).id);
    },
  },
  {
    method: 'get',
    path: '/v1/credentials',
    roles: CONTROL,
    access: 'reader',
    summary: 'Credential metadata.',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, store) {
      ctx.body = { credentials: await store.list() };
    },
  },
  {
    method: 'get',
    path: '/v1/credentials/{id}',
    roles: CONTROL,
    access: 'reader',
    summary: "One credential's metadata.",
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: ['credential_not_found'],
    db: true,
    async handler(ctx, store) {
      ctx.body = await store.get(ctx.params.id!);
    },
  },
  {
    method: 'post',
    path: '/v1/credentials/{id}/rotate',
    roles: CONTROL,
    access: 'admin',
    summary: "Replaces a credential's secret.",
    body: { schema: 'CredentialSecret', invalid: 'credential_invalid' },
    ok: { 200: { description: 'Metadata', schema: 'Any' } },
    errors: ['credential_not_found', 'credential_invalid', 'vault_unavailable'],
    db: true,
    async handler(ctx, store) {
      const body = ctx.state.body as { secret: unknown };
      ctx.body = await store.rotate(ctx.params.id!, secretOf(body.secret));
    },
  },
  {
    method: 'post',
    path: '/v1/credentials/{id}/disable',
    roles: CONTROL,
    access: 'admin',
    summary: 'Disables a credential.',
    ok: { 200: { description: 'Metadata', schema: 'Any' } },
    errors: ['credential_not_found'],
    db: true,
    async handler(ctx, store) {
      ctx.body = await store.disable(ctx.params.id!);
    },
  },
]);

// A provider key travels in an HTTP header: visible ASCII only, or the call fails long after the key was stored.
function secretOf(v: unknown): string {
  if (typeof v !== 'string' || !/^[\x21-\x7e]{8,4096}$/.test(v)) {
    throw new GatewayError('credential_invalid', 'secret must be 8 to 4096 visible ASCII characters (no spaces or line breaks)');
  }
  return v;
}

function parseNew(raw: unknown): NewCredential {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new GatewayError('credential_invalid', 'send a JSON object');
  const r = raw as Record<string, unknown>;
  const unknown = Object.keys(r).find((k) => !FIELDS.includes(k));
  if (unknown) throw new GatewayError('credential_invalid', `'${unknown}' is not a credential field`);
  const name = (field: string, required: boolean): string | null => {
    const v = r[field];
    if ((v === undefined || v === null) && !required) return null;
    if (typeof v !== 'string' || !NAME.test(v))
      throw new GatewayError('credential_invalid', `${field} must be 1-128 letters, digits or _.:@-`);
    return v;
  };
  let expires: Date | null = null;
  if (r.expires_at !== undefined && r.expires_at !== null) {
    expires = typeof r.expires_at === 'string' ? new Date(r.expires_at) : new Date(NaN);
    if (Number.isNaN(expires.getTime()) || expires <= new Date())
      throw new GatewayError('credential_invalid', 'expires_at must be an ISO 8601 time in the future');
  }
  return {
    provider: name('provider', true)!,
    name: name('name', true)!,
    secret: secretOf(r.secret),
    owner_user: name('owner_user', false),
    owner_group: name('owner_group', false),
    expires_at: expires,
  };
}
