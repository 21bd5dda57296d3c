import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { generateKeyPair, SignJWT } from 'jose';
import Koa from 'koa';
import pino from 'pino';
import { createFinalGate, FORWARD_TOKEN_HEADER, signForwardToken, type FinalGate } from '../../src/final-gate/index.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { errorMiddleware } from '../../src/server/error-middleware.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { buildCustomBundle } from '../helpers/bundle.js';
import { eventually } from '../helpers/http.js';
import { SEED_WORKER } from '../helpers/fixtures.js';

const READER = 'bundle-reader-token-0123456789';
const logger = pino({ level: 'silent' });
let gw: BootedGateway;
const closers: (() => void)[] = [];

const seedWorker = SEED_WORKER;
const input = { action: 'register', subject: seedWorker, resource: {}, context: {} };

/** A target service (an artifact store, say) whose only guard is the final gate. */
async function targetService(options: { bundle?: string } = {}): Promise<{ url: string; gate: FinalGate }> {
  const gate = createFinalGate({
    gatewayUrl: gw.url(),
    audience: 'artifact-store',
    bundleToken: READER,
    logger,
    ...(options.bundle && { bundle: options.bundle }),
  });
  await gate.ready;
  const app = new Koa();
  app.use(errorMiddleware(logger));
  app.use(gate.middleware());
  app.use((ctx) => {
    ctx.body = { stored: true, by: ctx.state.finalGate.forward.subject, revision: ctx.state.finalGate.revision };
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  closers.push(
    () => server.close(),
    () => gate.close(),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, gate };
}

/** What the gateway does before forwarding: decide, then vouch for that decision and this body. */
async function forward(body: string, opts: { ttlMs?: number; audience?: string } = {}): Promise<string> {
  const { decision, revision } = await gw.gateway.decisions.decide(ENTRYPOINTS.register, input, 'cloud-us-east-1-01');
  if (!decision.allow) throw new Error('the gateway itself denied the test input');
  return signForwardToken(
    gw.gateway.keys.current(),
    {
      issuer: 'cynode-gateway',
      audience: opts.audience ?? 'artifact-store',
      subject: 'cloud-us-east-1-01',
      entrypoint: ENTRYPOINTS.register,
      input,
      revision,
    },
    body,
    opts.ttlMs ?? 30_000,
  );
}

async function send(url: string, body: string, token?: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/artifacts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token && { [FORWARD_TOKEN_HEADER]: token }) },
    body,
  });
  return { status: res.status, body: await res.json() };
}

test.before(async () => {
  gw = await bootGateway({ env: { CYNODE_BUNDLE_SERVICE_TOKEN: READER }, roles: ['control'] });
});
test.after.always(async () => {
  for (const close of closers) close();
  await gw?.stop();
});

const body = JSON.stringify({ name: 'report.md', content: 'hello' });

test.serial('a forwarded request the gateway allowed passes the final gate on the same bundle', async (t) => {
  const target = await targetService();
  t.is(target.gate.engine.status().active?.digest, gw.gateway.policy.status().active?.digest, "the target runs the gateway's exact bundle");
  const res = await send(target.url, body, await forward(body));
  t.is(res.status, 200);
  t.deepEqual(res.body, { stored: true, by: 'cloud-us-east-1-01', revision: 'test-suite' });
});

test.serial('forged, replayed, expired, misaddressed and body-swapped tokens are refused', async (t) => {
  const target = await targetService();
  const code = async (token: string | undefined, b = body) => {
    const r = await send(target.url, b, token);
    return [r.status, r.body.error?.code];
  };
  t.deepEqual(await code(undefined), [401, 'forward_token_invalid']);
  t.deepEqual(await code('not.a.jwt'), [401, 'forward_token_invalid']);

  // Forged: right kid and claims, signed with a key that is not the gateway's.
  const { privateKey } = await generateKeyPair('ES256');
  const forged = await signForwardToken(
    { kid: gw.gateway.keys.current().kid, privateKey },
    { issuer: 'cynode-gateway', audience: 'artifact-store', subject: 'x', entrypoint: ENTRYPOINTS.register, input, revision: 'test-suite' },
    body,
    30_000,
  );
  t.deepEqual(await code(forged), [401, 'forward_token_invalid']);

  // A gateway-signed JWT that is not a forward token (wrong typ) cannot be used as one.
  const wrongType = await new SignJWT({ act: ENTRYPOINTS.register, input, rev: 'test-suite', bh: 'x' })
    .setProtectedHeader({ alg: 'ES256', kid: gw.gateway.keys.current().kid, typ: 'JWT' })
    .setIssuer('cynode-gateway')
    .setAudience('artifact-store')
    .setSubject('x')
    .setJti('j1')
    .setIssuedAt()
    .setExpirationTime('30s')
    .sign(gw.gateway.keys.current().privateKey);
  t.deepEqual(await code(wrongType), [401, 'forward_token_invalid']);

  const once = await forward(body);
  t.deepEqual(await code(once), [200, undefined]);
  t.deepEqual(await code(once), [401, 'forward_token_replayed']);

  t.deepEqual(await code(await forward(body), JSON.stringify({ name: 'other.md', content: 'evil' })), [401, 'forward_body_mismatch']);
  t.deepEqual(await code(await forward(body, { audience: 'billing' })), [401, 'forward_token_invalid']);

  const shortLived = await forward(body, { ttlMs: 1000 });
  await new Promise((r) => setTimeout(r, 2100));
  const expired = await send(target.url, body, shortLived);
  t.is(expired.status, 401);
  t.regex(expired.body.error.message, /expired/);
});

test.serial('revision skew: the target denies on its own bundle what the gateway allowed', async (t) => {
  const policies = join(packageRoot(), 'policies');
  const data = readFileSync(join(policies, 'config/register/data.yaml'), 'utf8').replace(/^ {6}us-east-1: true\n/m, '');
  t.false(data.includes('us-east-1'), 'the stricter bundle drops us-east-1');
  const stricter = await buildCustomBundle(
    {
      '.manifest': readFileSync(join(policies, '.manifest'), 'utf8'),
      'cynode/register/register.rego': readFileSync(join(policies, 'cynode/register/register.rego'), 'utf8'),
      'cynode/lib/lib.rego': readFileSync(join(policies, 'cynode/lib/lib.rego'), 'utf8'),
      'config/register/data.yaml': data,
    },
    { revision: 'stricter' },
  );
  const target = await targetService({ bundle: stricter });
  const res = await send(target.url, body, await forward(body));
  t.is(res.status, 403);
  t.is(res.body.error.code, 'policy_denied');
  t.deepEqual(res.body.error.details, { reasons: ['region_not_allowed'], revision: 'stricter' });
});

test.serial('after key rotation, tokens from the old and the new key both verify', async (t) => {
  const target = await targetService();
  const old = await forward(body);
  await gw.gateway.keys.rotate();
  const fresh = await forward(body);
  t.is((await send(target.url, body, old)).status, 200);
  t.is((await send(target.url, body, fresh)).status, 200);
  const jwks = (await (await fetch(`${gw.url()}/.well-known/jwks.json`)).json()) as { keys: { kid: string; d?: string }[] };
  t.true(jwks.keys.length >= 2);
  t.true(
    jwks.keys.every((k) => k.d === undefined),
    'no private key material is published',
  );
});

test.serial('a target without a loadable bundle fails closed with 503', async (t) => {
  const target = await targetService({ bundle: 'http://127.0.0.1:9/nothing-listens-here' });
  await eventually(() => target.gate.engine.status().lastError !== undefined);
  const res = await send(target.url, body, await forward(body));
  t.is(res.status, 503);
  t.is(res.body.error.code, 'bundle_unavailable');
});
