import { randomBytes } from 'node:crypto';
import test from 'ava';
import pino from 'pino';
import { GatewayError } from '../../src/errors/index.js';
import { createCredentialStore, keyRing, openSecret, sealSecret } from '../../src/vault/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';

const key = () => randomBytes(32).toString('base64');
const OLD = key();
const NEW = key();
const SECRET = `sk-test-${randomBytes(24).toString('hex')}`;

let gw: BootedGateway;
let base: string;
const logs = captureLogger();
const answers: string[] = [];
const seen = <T extends { body: unknown }>(a: T): T => {
  answers.push(JSON.stringify(a.body));
  return a;
};

test.before(async () => {
  gw = await bootGateway({ env: { CYNODE_MASTER_KEY: OLD }, roles: ['control'], logger: logs.logger });
  base = gw.url();
});
test.after.always(() => gw?.stop());

test('envelope: a sealed secret opens only with its id, version and master key', (t) => {
  const ring = keyRing(OLD);
  const env = sealSecret(ring, 'cred-1', 1, SECRET);
  t.is(openSecret(ring, 'cred-1', 1, env), SECRET);
  t.false(env.sealedSecret.includes(Buffer.from(SECRET)), 'no plaintext in the sealed value');
  const refuse = (f: () => unknown) => t.is((t.throws(f, { instanceOf: GatewayError }) as GatewayError).code, 'vault_unavailable');
  refuse(() => openSecret(ring, 'cred-2', 1, env)); // moved to another row
  refuse(() => openSecret(ring, 'cred-1', 2, env)); // replayed as another version
  refuse(() => openSecret(keyRing(NEW), 'cred-1', 1, env)); // another master key
  const tampered = Buffer.from(env.sealedSecret);
  tampered[20]! ^= 1;
  refuse(() => openSecret(ring, 'cred-1', 1, { ...env, sealedSecret: tampered }));
  t.throws(() => keyRing(Buffer.alloc(16).toString('base64')), { message: /32 bytes/ });
});

test.serial('the admin API stores a credential and only ever answers metadata', async (t) => {
  const created = seen(
    await call<Record<string, unknown>>(base, '/v1/credentials', {
      json: { provider: 'openai', name: 'prod', secret: SECRET, owner_group: 'ml' },
    }),
  );
  t.is(created.status, 201);
  t.is(created.body.version, 1);
  t.is(created.body.kid, keyRing(OLD).current.kid);
  t.false('secret' in created.body);
  const id = String(created.body.id);
  t.is(seen(await call(base, `/v1/credentials/${id}`)).body.name, 'prod');
  t.is(seen(await call<{ credentials: unknown[] }>(base, '/v1/credentials')).body.credentials.length, 1);
  t.is((await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'prod', secret: SECRET } })).status, 409);

  const { secret } = await gw.gateway.credentials.reveal(id);
  t.is(secret, SECRET, 'the egress path can open it');
  const rows = await gw.gateway.db.knex('credentials').select('*');
  const raw =
    JSON.stringify(rows) +
    rows.map((r: Record<string, Buffer>) => Buffer.concat([r.wrapped_key!, r.sealed_secret!]).toString('latin1')).join('');
  t.false(raw.includes(SECRET), 'no plaintext secret in the database');
  t.false(raw.includes(OLD), 'no master key in the database');

  const rotated = seen(await call<Record<string, unknown>>(base, `/v1/credentials/${id}/rotate`, { json: { secret: `${SECRET}-v2` } }));
  t.is(rotated.body.version, 2);
  t.is((await gw.gateway.credentials.reveal(id)).secret, `${SECRET}-v2`);

  const disabled = seen(await call<Record<string, unknown>>(base, `/v1/credentials/${id}/disable`, { method: 'POST' }));
  t.false(disabled.body.active);
  const err = await t.throwsAsync(() => gw.gateway.credentials.reveal(id), { instanceOf: GatewayError });
  t.is(err.code, 'credential_disabled');
});

test.serial('an expired credential is refused; bad input gets credential_invalid; only admins may call', async (t) => {
  const created = await call<{ id: string }>(base, '/v1/credentials', { json: { provider: 'anthropic', name: 'short', secret: SECRET } });
  await gw.gateway.db
    .knex('credentials')
    .where({ id: created.body.id })
    .update({ expires_at: new Date(Date.now() - 1000) });
  t.is((await gw.gateway.credentials.get(created.body.id)).active, false);
  const err = await t.throwsAsync(() => gw.gateway.credentials.reveal(created.body.id), { instanceOf: GatewayError });
  t.is(err.code, 'credential_expired');

  for (const json of [
    { provider: 'openai', name: 'x' },
    { provider: 'openai', name: 'x', secret: 'short' },
    { provider: 'open ai', name: 'x', secret: SECRET },
    { provider: 'openai', name: 'x', secret: SECRET, colour: 1 },
  ]) {
    const res = seen(await call(base, '/v1/credentials', { json }));
    t.is(res.status, 422, JSON.stringify(Object.keys(json)));
    t.is((res.body.error as { code: string }).code, 'credential_invalid');
  }
  t.is((await call(base, '/v1/credentials/not-an-id')).status, 404);
  t.is((await call(base, '/v1/credentials', { token: null })).status, 401);
});

test.serial('rewrap moves every data key under a new master key; the old key alone no longer opens them', async (t) => {
  const before = await gw.gateway.credentials.list();
  t.true(before.length >= 2);
  const rotatedRing = keyRing(NEW, [OLD]);
  const store = createCredentialStore({ knex: gw.gateway.db.knex, ring: rotatedRing, logger: pino({ level: 'silent' }) });
  t.is(await store.rewrapAll(), before.length);
  t.is(await store.rewrapAll(), 0, 'nothing left under the old key');
  const active = before.find((c) => c.name === 'short')!;
  await gw.gateway.db.knex('credentials').where({ id: active.id }).update({ expires_at: null });
  const newOnly = createCredentialStore({ knex: gw.gateway.db.knex, ring: keyRing(NEW), logger: pino({ level: 'silent' }) });
  t.is((await newOnly.reveal(active.id)).secret, SECRET);
  const oldOnly = createCredentialStore({ knex: gw.gateway.db.knex, ring: keyRing(OLD), logger: pino({ level: 'silent' }) });
  t.is((await t.throwsAsync(() => oldOnly.reveal(active.id), { instanceOf: GatewayError })).code, 'vault_unavailable');
});

test.serial('no secret or master key in any log line or answer', async (t) => {
  const text = logs.lines.join('\n') + answers.join('\n');
  t.true(logs.lines.some((l) => l.includes('credential created')));
  t.false(text.includes(SECRET));
  t.false(text.includes(OLD) || text.includes(NEW));
});
