import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import test from 'ava';
import {
  createReplayCache,
  FORWARD_TOKEN_HEADER,
  type ForwardClaims,
  forwardMacKeys,
  signForwardMac,
  verifyForwardMac,
} from '../../src/final-gate/forward-token.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { keyRing } from '../../src/vault/keyring.js';
import { startFakeProvider, type FakeProvider } from '../helpers/fake-providers.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';

const MASTER = randomBytes(32).toString('base64');
const ring = keyRing(MASTER);
const keys = forwardMacKeys(ring);
const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

const claims = (over: Partial<ForwardClaims> = {}): ForwardClaims => ({
  issuer: 'cynode-gateway',
  audience: 'cynode-egress',
  subject: 'orchestrator:admin',
  entrypoint: ENTRYPOINTS.apiCall,
  input: { action: 'api.call' },
  revision: 'r1',
  ...over,
});
const options = (replay = createReplayCache()) => ({
  macKeys: keys,
  issuer: 'cynode-gateway',
  audience: 'cynode-egress',
  replay,
  maxTtlMs: 31_000,
});
const parts = (token: string) => token.split('.') as [string, string, string, string];
const payloadOf = (token: string) => JSON.parse(Buffer.from(parts(token)[2], 'base64url').toString('utf8')) as Record<string, unknown>;
test('a MAC forward token verifies once, for its body, with the claims it was signed with', (t) => {
  const body = '{"request_id":"r"}';
  const token = signForwardMac(keys, claims(), body, 30_000);
  t.true(token.startsWith(`cfm1.${ring.current.kid}.`));
  const replay = createReplayCache();
  const v = verifyForwardMac(token, Buffer.from(body), options(replay));
  t.like(v, { subject: 'orchestrator:admin', entrypoint: ENTRYPOINTS.apiCall, revision: 'r1', input: { action: 'api.call' } });
  t.true(v.expiresAt > Date.now());
  t.throws(() => verifyForwardMac(token, body, options(replay)), { message: /already used/ });
});

test('every forged, tampered, misdirected, stale or replayed MAC forward token is refused', (t) => {
  const body = '{"request_id":"r"}';
  const genuine = signForwardMac(keys, claims(), body, 30_000);
  const [prefix, kid, payload, mac] = parts(genuine);
  const otherKeys = forwardMacKeys(keyRing(randomBytes(32).toString('base64')));
  const flipped = Buffer.from(mac, 'base64url');
  flipped[0] = flipped[0]! ^ 1;
  const withIat = (iat: number, exp: number) => signedWith(keys, { ...payloadOf(genuine), iat, exp, jti: randomUUID() });
  const now = Math.floor(Date.now() / 1000);
  const attacks: [string, string, RegExp][] = [
    ['empty', '', /malformed/],
    ['a JWT', 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig', /malformed/],
    ['three parts', `${prefix}.${kid}.${payload}`, /malformed/],
    ['five parts', `${genuine}.x`, /malformed/],
    ['another prefix', `cfm2.${kid}.${payload}.${mac}`, /malformed/],
    ['unknown key id', `${prefix}.0123456789abcdef.${payload}.${mac}`, /unknown key/],
    ['MAC under another master key', signForwardMac(otherKeys, claims(), body, 30_000).replace(/^cfm1\.[^.]+/, `cfm1.${kid}`), /bad MAC/],
    ['claims changed, MAC kept', `${prefix}.${kid}.${b64({ ...payloadOf(genuine), input: { action: 'x' } })}.${mac}`, /bad MAC/],
    ['one MAC bit flipped', `${prefix}.${kid}.${payload}.${flipped.toString('base64url')}`, /bad MAC/],
    ['MAC truncated', `${prefix}.${kid}.${payload}.${mac.slice(0, 20)}`, /bad MAC/],
    ['no MAC', `${prefix}.${kid}.${payload}.`, /bad MAC/],
    ['claims not JSON', signedWith(keys, 'not json'), /not a JSON object/],
    ['claims a JSON array', signedWith(keys, [1]), /not a JSON object/],
    ['another issuer', signForwardMac(keys, claims({ issuer: 'evil' }), body, 30_000), /issuer/],
    ['another audience', signForwardMac(keys, claims({ audience: 'cynode-artifacts' }), body, 30_000), /audience/],
    ['expired', signForwardMac(keys, claims(), body, -2000), /expired/],
    ['lifetime longer than forward tokens live', signForwardMac(keys, claims(), body, 3_600_000), /lifetime/],
    ['issued in the future', withIat(now + 3600, now + 3610), /future/],
    ['times not numbers', signedWith(keys, { ...payloadOf(genuine), exp: String(now + 10) }), /malformed/],
    ['no subject', signedWith(keys, { ...payloadOf(genuine), sub: undefined }), /malformed/],
    ['no input', signedWith(keys, { ...payloadOf(genuine), input: undefined }), /malformed/],
    ['another body', signForwardMac(keys, claims(), '{"request_id":"other"}', 30_000), /not the one the gateway decided on/],
  ];
  for (const [name, token, why] of attacks) {
    const err = t.throws(() => verifyForwardMac(token, body, options()), undefined, name);
    t.regex(err?.message ?? '', why, name);
    t.false((err?.message ?? '').includes(mac), `${name}: the reason never echoes the token`);
  }
  t.notThrows(() => verifyForwardMac(genuine, body, options()), 'the genuine token still verifies');
});

test('a token signed under a previous master key verifies while the ring holds it, and not after', (t) => {
  const old = randomBytes(32).toString('base64');
  const token = signForwardMac(forwardMacKeys(keyRing(old)), claims(), 'b', 30_000);
  t.notThrows(() => verifyForwardMac(token, 'b', { ...options(), macKeys: forwardMacKeys(keyRing(MASTER, [old])) }));
  t.throws(() => verifyForwardMac(token, 'b', options()), { message: /unknown key/ });
});

// A token with these exact claims, MAC'd under `withKeys`' current key (what only a key holder can make).
function signedWith(withKeys: typeof keys, payload: unknown): string {
  const { kid, key } = withKeys.current();
  const signed = `cfm1.${kid}.${b64(payload)}`;
  return `${signed}.${hmac(key, signed)}`;
}

// node:crypto directly, a second implementation beside the library's.
const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest('base64url');

let gw: BootedGateway;
let fake: FakeProvider;

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({ env: { CYNODE_OPENAI_BASE_URL: fake.url, CYNODE_MASTER_KEY: MASTER }, roles: ['control', 'egress'] });
  const base = gw.url('control');
  await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: `sk-${randomBytes(16).toString('hex')}` } });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  await call(base, '/v1/budgets/task/task-mac', { method: 'PUT', json: { limit_usd: 1 } });
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

test.serial('API Egress takes a MAC forward token over HTTP once, for its body only, and refuses a forged one', async (t) => {
  const input = {
    action: 'api.call',
    subject: { kind: 'orchestrator', id: 'admin', labels: [] },
    resource: { provider: 'openai', operation: 'chat.completions', model: 'gpt-4o-mini', stream: false, estimated_cost_usd: 0.00001 },
    context: {
      task_id: 'task-mac',
      job_id: null,
      user_id: null,
      project_id: null,
      group_id: null,
      region: 'local',
      preferences: { cloud_allowed: true },
      requirements: {},
      budget: { task: { limit_usd: 1, spent_usd: 0, reserved_usd: 0, remaining_usd: 1 }, user: null, subject: null },
    },
  };
  const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16 };
  const body = JSON.stringify({ request_id: randomUUID(), provider: 'openai', operation: 'chat.completions', params });
  const send = (b: string, token: string) =>
    call<Record<string, any>>(gw.url('egress'), '/v1/egress/call', {
      token: null,
      body: b,
      headers: { 'content-type': 'application/json', [FORWARD_TOKEN_HEADER]: token },
    });
  const forged = signForwardMac(forwardMacKeys(keyRing(randomBytes(32).toString('base64'))), claims({ input }), body, 10_000);
  const refused = await send(body, forged.replace(/^cfm1\.[^.]+/, `cfm1.${ring.current.kid}`));
  t.is(refused.status, 401);
  t.is(refused.body.error.code, 'forward_token_invalid');
  const token = signForwardMac(keys, claims({ input }), body, 10_000);
  t.is((await send(body.replace('Say hello', 'Say goodbye'), token)).body.error.code, 'forward_body_mismatch');
  const first = await send(body, token);
  t.is(first.status, 200, JSON.stringify(first.body));
  const again = await send(body, token);
  t.is(again.status, 401);
  t.is(again.body.error.code, 'forward_token_replayed');
});
