import { generateKeyPair, SignJWT, decodeProtectedHeader, decodeJwt, UnsecuredJWT } from 'jose';
import test from 'ava';
import { WORKER_AUDIENCE, WORKER_TOKEN_TYPE } from '../../src/workers/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { call } from '../helpers/http.js';
import type { TestDatabase } from '../helpers/postgres.js';
import { captureLogger, startTestGateway } from '../helpers/start.js';
import { createPsk, pskSecretPart, register, registerWorker } from '../helpers/workers.js';

let db: TestDatabase;
let gw: BootedGateway;
let base: string;
let psk: { id: string; secret: string };
const logs = captureLogger();
const answers: string[] = [];

test.before(async () => {
  gw = await bootGateway({ roles: ['control'], logger: logs.logger });
  db = gw.db!;
  base = gw.url();
  psk = await createPsk(base, 'fleet-1');
});
test.after.always(() => gw?.stop());

const seen = <T extends { body: unknown }>(a: T): T => {
  answers.push(JSON.stringify(a.body));
  return a;
};

test.serial("the README's Example 1 worker registers with its PSK and gets a short-lived JWT", async (t) => {
  const res = await register(base, psk.secret, { ...SEED_WORKER, max_concurrency: 4 }); // the one answer that carries a token
  t.is(res.status, 200);
  const token = String(res.body.token);
  const header = decodeProtectedHeader(token);
  const claims = decodeJwt(token);
  t.is(header.alg, 'ES256');
  t.is(header.typ, WORKER_TOKEN_TYPE);
  t.is(claims.iss, 'cynode-gateway');
  t.is(claims.aud, WORKER_AUDIENCE);
  t.is(claims.sub, SEED_WORKER.node_id);
  t.is(claims.exp! - claims.iat!, 900, 'expires in 15 minutes');
  t.true(Number(res.body.poll_interval_ms) > 0 && Number(res.body.heartbeat_interval_ms) > 0);
  t.true(Number(res.body.heartbeat_interval_ms) < Number(res.body.lease_ttl_ms));

  const jwks = await call<{ keys: { kid: string }[] }>(base, '/.well-known/jwks.json', { token: null });
  t.true(
    jwks.body.keys.some((k) => k.kid === header.kid),
    'the kid is published',
  );

  const workers = seen(await call<{ workers: { nodeId: string; capabilities: Record<string, unknown> }[] }>(base, '/v1/workers'));
  const stored = workers.body.workers.find((w) => w.nodeId === SEED_WORKER.node_id)!;
  t.deepEqual(stored.capabilities.rate_limits, { rpm: 300 });
  t.deepEqual(stored.capabilities.labels, ['cloud', 'provider_openai']);
  const history = await gw.gateway.db.knex('capability_reports').where({ node_id: SEED_WORKER.node_id });
  t.is(history.length, 1);
  t.is(history[0].reason, 'registration');
});

test.serial('a capability report is validated field by field', async (t) => {
  const res = seen(
    await register(base, psk.secret, {
      node_id: 'bad node!',
      labels: 'cloud',
      inference_mode: 'quantum',
      max_concurrency: 0,
      rate_limits: { rpm: -1, rph: 5 },
      reachable_endpoints: ['ftp://x'],
      colour: 'blue',
    }),
  );
  t.is(res.status, 422);
  const error = res.body.error as { code: string; details: { errors: { field: string }[] } };
  t.is(error.code, 'capability_invalid');
  t.deepEqual(error.details.errors.map((e) => e.field).sort(), [
    'colour',
    'inference_mode',
    'labels',
    'max_concurrency',
    'node_id',
    'rate_limits.rph',
    'rate_limits.rpm',
    'reachable_endpoints[0]',
  ]);
});

test.serial('admission is the register policy: a denied report gets 403 with the reasons', async (t) => {
  const res = seen(await register(base, psk.secret, { ...SEED_WORKER, node_id: 'cloud-ap-01', region: 'ap-south-1' }));
  t.is(res.status, 403);
  const error = res.body.error as { code: string; details: { reasons: string[]; decision_id: string } };
  t.is(error.code, 'policy_denied');
  t.deepEqual(error.details.reasons, ['region_not_allowed']);
  const decision = await call<{ result: { allow: boolean } }>(base, `/v1/decisions/${error.details.decision_id}`);
  t.is(decision.status, 200);
  t.false(decision.body.result.allow);
});

test.serial('a missing, malformed or wrong PSK is refused with psk_invalid', async (t) => {
  for (const presented of [
    null,
    'not-a-psk',
    psk.secret.slice(0, -1) + (psk.secret.endsWith('A') ? 'B' : 'A'),
    `cynpsk_000000000000_${'x'.repeat(43)}`,
  ]) {
    const res = seen(await register(base, presented, { ...SEED_WORKER, node_id: 'cloud-us-east-1-77' }));
    t.is(res.status, 401, String(presented));
    t.is((res.body.error as { code: string }).code, 'psk_invalid');
  }
});

test.serial('PSKs rotate with overlap: two work at once, a revoked one stops, secrets are never listed', async (t) => {
  const next = await createPsk(base, 'fleet-2');
  t.is((await register(base, psk.secret, { ...SEED_WORKER, node_id: 'rot-a', max_concurrency: 1 })).status, 200);
  t.is((await register(base, next.secret, { ...SEED_WORKER, node_id: 'rot-b', max_concurrency: 1 })).status, 200);
  const revoked = seen(await call(base, `/v1/psks/${psk.id}`, { method: 'DELETE' }));
  t.is(revoked.status, 200);
  t.false(revoked.body.active);
  const refused = await register(base, psk.secret, { ...SEED_WORKER, node_id: 'rot-c', max_concurrency: 1 });
  t.is(refused.status, 401);
  t.is((refused.body.error as { code: string }).code, 'psk_invalid');
  t.is((await register(base, next.secret, { ...SEED_WORKER, node_id: 'rot-c', max_concurrency: 1 })).status, 200);
  const list = seen(await call<{ psks: Record<string, unknown>[] }>(base, '/v1/psks'));
  t.is(list.body.psks.length, 2);
  t.false(JSON.stringify(list.body).includes(next.secret.slice(-20)));
  t.true(list.body.psks.every((p) => !('secret' in p)));
  t.is((await call(base, '/v1/psks/nope', { method: 'DELETE' })).status, 404);
  const stored = await gw.gateway.db.knex('psks').select('secret_sha256');
  t.true(
    stored.every((r: { secret_sha256: Buffer }) => r.secret_sha256.length === 32),
    'only digests are stored',
  );
  psk = next;
});

test.serial('an expired PSK is refused', async (t) => {
  const short = await createPsk(base, 'short');
  await gw.gateway.db
    .knex('psks')
    .where({ id: short.id })
    .update({ expires_at: new Date(Date.now() - 1000) });
  const res = await register(base, short.secret, { ...SEED_WORKER, node_id: 'exp-a', max_concurrency: 1 });
  t.is(res.status, 401);
});

test.serial('a node id held by a live session cannot be claimed; its own token renews it', async (t) => {
  const first = await registerWorker(base, psk.secret, { node_id: 'held-01' });
  const other = await createPsk(base, 'intruder');
  const stolen = seen(await register(base, other.secret, { ...SEED_WORKER, node_id: 'held-01', max_concurrency: 1 }));
  t.is(stolen.status, 409);
  t.is((stolen.body.error as { code: string }).code, 'node_id_taken');
  t.truthy(stolen.headers.get('retry-after'));

  const renewed = await register(base, psk.secret, { ...SEED_WORKER, node_id: 'held-01', max_concurrency: 2 }, first.token);
  t.is(renewed.status, 200);
  const old = await call(base, '/jobs/poll', { token: first.token, json: {} });
  t.is(old.status, 401);
  t.is((old.body.error as { code: string }).code, 'session_replaced');
  const fresh = await call(base, '/jobs/poll', { token: String(renewed.body.token), json: {} });
  t.is(fresh.status, 200);
  const history = await gw.gateway.db.knex('capability_reports').where({ node_id: 'held-01' }).orderBy('id');
  t.deepEqual(
    history.map((h: { report: { max_concurrency: number } }) => h.report.max_concurrency),
    [4, 2],
  );

  // Once the hold lapses (the node went silent), the id can be registered afresh.
  await gw.gateway.db
    .knex('workers')
    .where({ node_id: 'held-01' })
    .update({ held_until: new Date(Date.now() - 1) });
  t.is((await register(base, other.secret, { ...SEED_WORKER, node_id: 'held-01', max_concurrency: 1 })).status, 200);
});

test.serial('a capability update through /status is re-admitted and kept in the history', async (t) => {
  const w = await registerWorker(base, psk.secret, { node_id: 'upd-01' });
  const ok = await call(base, '/status', { token: w.token, json: { capabilities: { ...w.report, max_concurrency: 8 } } });
  t.is(ok.status, 200);
  const denied = seen(await call(base, '/status', { token: w.token, json: { capabilities: { ...w.report, region: 'mars-1' } } }));
  t.is(denied.status, 403);
  t.is((denied.body.error as { code: string }).code, 'policy_denied');
  const other = await call(base, '/status', { token: w.token, json: { capabilities: { ...w.report, node_id: 'someone-else' } } });
  t.is(other.status, 403);
  const row = await gw.gateway.db.knex('workers').where({ node_id: 'upd-01' }).first();
  t.is(row.capabilities.max_concurrency, 8);
  t.is(row.capabilities.region, 'us-east-1');
  t.deepEqual(
    (await gw.gateway.db.knex('capability_reports').where({ node_id: 'upd-01' }).orderBy('id')).map((r: { reason: string }) => r.reason),
    ['registration', 'update'],
  );
});

test.serial('forged worker tokens are refused: alg none, wrong key, wrong aud/iss/typ, expired, unknown kid', async (t) => {
  const w = await registerWorker(base, psk.secret, { node_id: 'jwt-01' });
  const { kid } = decodeProtectedHeader(w.token);
  const real = gw.gateway.keys.current();
  const now = Math.floor(Date.now() / 1000);
  const sid = String(decodeJwt(w.token).sid);
  const { privateKey: foreign } = await generateKeyPair('ES256');
  const sign = (key: import('jose').CryptoKey, header: Record<string, unknown>, claims: Record<string, unknown>) =>
    new SignJWT({ sid, ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: WORKER_TOKEN_TYPE, kid: real.kid, ...header } as never)
      .sign(key);
  const good = { iss: 'cynode-gateway', aud: WORKER_AUDIENCE, sub: 'jwt-01', iat: now, exp: now + 600 };
  const forged: [string, string, string][] = [
    ['alg none', new UnsecuredJWT({ ...good, sid }).encode(), 'token_invalid'],
    ['wrong key', await sign(foreign, { kid }, good), 'token_invalid'],
    ['wrong aud', await sign(real.privateKey, {}, { ...good, aud: 'cynode-forward' }), 'token_invalid'],
    ['wrong iss', await sign(real.privateKey, {}, { ...good, iss: 'evil' }), 'token_invalid'],
    ['wrong typ', await sign(real.privateKey, { typ: 'cynode-forward+jwt' }, good), 'token_invalid'],
    ['expired', await sign(real.privateKey, {}, { ...good, iat: now - 1200, exp: now - 600 }), 'token_expired'],
    ['unknown kid', await sign(foreign, { kid: 'no-such-kid' }, good), 'token_invalid'],
    ['garbage', 'not.a.jwt', 'token_invalid'],
  ];
  for (const [what, token, code] of forged) {
    const res = seen(await call(base, '/jobs/poll', { token, json: {} }));
    t.is(res.status, 401, what);
    t.is((res.body.error as { code: string }).code, code, what);
  }
  const noToken = await call(base, '/status', { token: null, json: {} });
  t.is(noToken.status, 401);
  const adminAsWorker = await call(base, '/jobs/poll', { json: {} });
  t.is(adminAsWorker.status, 401, 'the admin token is not a worker token');
  t.is((await call(base, '/jobs/poll', { token: w.token, json: {} })).status, 200, 'the real token still works');
});

test.serial('signing keys rotate: the old key keeps verifying, new tokens carry the new kid', async (t) => {
  const before = await registerWorker(base, psk.secret, { node_id: 'rot-key-01' });
  const rotated = seen(await call<{ kid: string; keys: string[] }>(base, '/v1/keys/rotate', { method: 'POST' }));
  t.is(rotated.status, 200);
  const oldKid = decodeProtectedHeader(before.token).kid!;
  t.not(rotated.body.kid, oldKid);
  t.true(rotated.body.keys.includes(oldKid) && rotated.body.keys.includes(rotated.body.kid));
  t.is((await call(base, '/jobs/poll', { token: before.token, json: {} })).status, 200, 'old-key token still verifies');
  const after = await registerWorker(base, psk.secret, { node_id: 'rot-key-02' });
  t.is(decodeProtectedHeader(after.token).kid, rotated.body.kid);
  t.is((await call(base, '/v1/keys/rotate', { method: 'POST', token: after.token })).status, 401, 'a worker cannot rotate keys');
});

test.serial('no PSK, JWT or admin token appears in any log line or answer', async (t) => {
  await gw.gateway.decisionLog.flush();
  const text = logs.lines.join('\n') + answers.join('\n');
  t.true(logs.lines.length > 0);
  t.false(text.includes(psk.secret), 'PSK');
  t.false(text.includes(pskSecretPart(psk.secret)), 'PSK secret part');
  t.false(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(text), 'no JWT');
  t.false(text.includes('test-admin-token'), 'admin token');
  const decisions = await gw.gateway.db.knex('decision_log').select('input');
  t.false(JSON.stringify(decisions).includes(psk.secret));
});

test.serial('failed PSK attempts are throttled per source address', async (t) => {
  const strict = await startTestGateway({ DATABASE_URL: db.url, CYNODE_PSK_FAILURE_LIMIT: '3' }, ['control']);
  t.teardown(() => strict.gateway.stop());
  // Failures are counted across every gateway on the database: start from a clean window, not the earlier tests' failures.
  await gw.gateway.db.knex('psk_failures').delete();
  for (let i = 0; i < 3; i++) t.is((await register(strict.url(), 'cynpsk_guess', SEED_WORKER)).status, 401);
  const blocked = await register(strict.url(), psk.secret, { ...SEED_WORKER, node_id: 'thr-01' });
  t.is(blocked.status, 429, 'even the right PSK waits once the source is throttled');
  t.is((blocked.body.error as { code: string }).code, 'rate_limited');
  t.true(Number(blocked.headers.get('retry-after')) >= 1);
});
