import test from 'ava';
import { decodeJwt } from 'jose';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createPsk, registerWorker, type TestWorker } from '../helpers/workers.js';

// A worker token cached on replica B (its verification and its session's row) stops on B as
// soon as its session ends through replica A: a deregistration or a quarantine at once (the
// NOTIFY on the workers channel), a newer registration within the row cache's second, and
// the token's own exp on the dot. Two in-process gateways on one PostgreSQL database stand
// for the two replicas; real JWTs, real HTTP on loopback.

const TOKEN_TTL_MS = 5000;
let db: TestDatabase;
let a: BootedGateway;
let b: BootedGateway;
let psk: string;

test.before(async () => {
  db = await createTestDatabase();
  const env = { CYNODE_WORKER_TOKEN_TTL_MS: String(TOKEN_TTL_MS), CYNODE_WORKER_QUARANTINE_POLL_MS: '600000' };
  a = await bootGateway({ database: db, roles: ['control'], env });
  b = await bootGateway({ database: db, roles: ['control'], env });
  psk = (await createPsk(a.url())).secret;
});
test.after.always(async () => {
  await b?.stop();
  await a?.stop();
  await db?.drop();
});

/** A read-only Worker API call on `gw` (a poll that waits for nothing): answers the status and error code. */
async function use(gw: BootedGateway, w: TestWorker): Promise<{ status: number; code: string | undefined }> {
  const res = await call(gw.url(), '/jobs/poll', { token: w.token, json: { wait_ms: 0 } });
  return { status: res.status, code: (res.body.error as { code?: string } | undefined)?.code };
}

/** Registers `nodeId` through A and makes B cache its token and row (several calls, all answered). */
async function cachedOnB(t: import('ava').ExecutionContext, nodeId: string): Promise<TestWorker> {
  const w = await registerWorker(a.url(), psk, { node_id: nodeId });
  for (let i = 0; i < 3; i++) t.is((await use(b, w)).status, 200, 'B serves the token');
  return w;
}

/** Ms from `since` until B refuses `w`'s token with `code`, calling as fast as B answers; throws after `limitMs`. */
async function untilRefused(w: TestWorker, code: string, since: number, limitMs: number): Promise<number> {
  for (;;) {
    const res = await use(b, w);
    if (res.status !== 200) {
      if (res.code !== code) throw new Error(`refused with ${res.code}, not ${code}`);
      return Date.now() - since;
    }
    if (Date.now() - since > limitMs) throw new Error(`B still serves the token after ${limitMs} ms`);
  }
}

test('a deregistration through A stops the token cached on B at once', async (t) => {
  const w = await cachedOnB(t, 'cache-rep-dereg');
  const since = Date.now();
  t.is((await call(a.url(), '/deregister', { token: w.token, json: {} })).status, 200);
  const ms = await untilRefused(w, 'session_ended', since, 1000);
  t.log(`refused on B ${ms} ms after the deregistration began`);
  t.is((await use(a, w)).code, 'session_ended', 'and on A');
});

test('a quarantine through A stops the token cached on B at once, and it stays refused', async (t) => {
  const w = await cachedOnB(t, 'cache-rep-quarantine');
  const since = Date.now();
  t.is((await call(a.url(), '/v1/workers/cache-rep-quarantine/quarantine', { json: { reason: 'cache test' } })).status, 200);
  const ms = await untilRefused(w, 'node_quarantined', since, 1000);
  t.log(`refused on B ${ms} ms after the quarantine began`);
  for (let i = 0; i < 3; i++) t.is((await use(b, w)).code, 'node_quarantined');
});

test('a newer registration through A stops the older token cached on B within the row cache second', async (t) => {
  const old = await cachedOnB(t, 'cache-rep-renew');
  const since = Date.now();
  // The node registers again, proving its session with the old token: a new session and token.
  const res = await call(a.url(), '/register', {
    token: old.token,
    json: { ...old.report },
    headers: { 'x-cynode-psk': psk },
  });
  t.is(res.status, 200);
  const renewed: TestWorker = { ...old, token: String(res.body.token) };
  const ms = await untilRefused(old, 'session_replaced', since, 1500);
  t.log(`old token refused on B ${ms} ms after the new registration began`);
  t.is((await use(b, renewed)).status, 200, 'the new token works on B');
  t.is((await use(a, old)).code, 'session_replaced', 'the old one is refused on A too');
});

test('a token cached on B is refused there from its exp on', async (t) => {
  const w = await registerWorker(a.url(), psk, { node_id: 'cache-rep-exp' });
  const expiresAt = decodeJwt(w.token).exp! * 1000;
  let served = 0;
  while (Date.now() < expiresAt - 300) {
    const r = await use(b, w);
    if (Date.now() < expiresAt) {
      t.is(r.status, 200, 'served while it lives');
      served++;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  t.true(served > 0, 'B served (and cached) the token before its exp');
  await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 10));
  t.is((await use(b, w)).code, 'token_expired');
  t.is((await use(a, w)).code, 'token_expired');
});
