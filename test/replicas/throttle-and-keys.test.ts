import { randomBytes } from 'node:crypto';
import test from 'ava';
import { decodeProtectedHeader } from 'jose';
import { ensureBundle } from '../helpers/bundle.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { type Replicas, startReplicas } from '../helpers/replicas.js';
import { createPsk, pskId, registerFrom, registerWorker } from '../helpers/workers.js';

// Three replicas on one PostgreSQL act as one gateway for the PSK failure throttle and for
// signing keys: a burst of wrong PSKs spread over all three gets exactly the limit checked,
// and a rotation through one replica makes every replica sign with a new key at once.

const LIMIT = 5;
let db: TestDatabase;
let group: Replicas;
let psk: string;

test.before(async () => {
  await ensureBundle();
  db = await createTestDatabase();
  group = await startReplicas(3, {
    DATABASE_URL: db.url,
    CYNODE_PSK_FAILURE_LIMIT: String(LIMIT),
    // Longer than any burst on a loaded machine: the whole burst falls in one window.
    CYNODE_PSK_FAILURE_WINDOW_MS: '600000',
  });
  psk = (await createPsk(group.urls()[0]!)).secret;
});
test.after.always(async () => {
  await group?.stop();
  await db?.drop();
});

/** `POST /register` to the replica at `base` from a chosen loopback source address. */
const registerAt = (base: string, presented: string, source: string) => registerFrom(Number(new URL(base).port), presented, source);

test.serial(
  '100 concurrent wrong PSKs spread over 3 replicas: exactly the limit are checked, the rest get 429 with Retry-After',
  async (t) => {
    const urls = group.urls();
    const source = '127.0.0.41';
    const guess = () => `cynpsk_${pskId(psk)}_${randomBytes(32).toString('base64url')}`;
    const burst = await Promise.all(Array.from({ length: 100 }, (_, i) => registerAt(urls[i % 3]!, guess(), source)));
    const checked = burst.filter((r) => r.status === 401);
    const throttled = burst.filter((r) => r.status === 429);
    t.log(`${checked.length} checked (401), ${throttled.length} throttled (429)`);
    t.is(checked.length, LIMIT, 'exactly the limit, across the fleet');
    t.is(throttled.length, 100 - LIMIT);
    t.true(checked.every((r) => r.code === 'psk_invalid'));
    t.true(throttled.every((r) => r.code === 'rate_limited' && Number(r.retryAfter) >= 1 && Number(r.retryAfter) <= 600));
    // The source stays throttled on every replica, even for the right PSK; another source is not.
    for (const url of urls) t.is((await registerAt(url, psk, source)).status, 429);
    for (const url of urls) t.is((await registerAt(url, psk, '127.0.0.42')).status, 200);
  },
);

test.serial(
  'a rotation through replica 0 makes all 3 sign with a new kid within about a second; earlier tokens still verify',
  async (t) => {
    const urls = group.urls();
    const kidOf = (token: string) => decodeProtectedHeader(token).kid!;
    const before = await Promise.all(urls.map((url, i) => registerWorker(url, psk, { node_id: `before-${i}` })));
    const oldKids = new Set(before.map((w) => kidOf(w.token)));
    t.is(oldKids.size, 3, 'each replica signs with a key of its own');

    const rotated = await call<{ kid: string; keys: string[] }>(urls[0]!, '/v1/keys/rotate', { method: 'POST' });
    t.is(rotated.status, 200);
    const started = Date.now();
    const newKids = new Map<number, string>();
    const newTokens: string[] = [];
    let n = 0;
    await eventually(async () => {
      for (const [i, url] of urls.entries()) {
        if (newKids.has(i)) continue;
        const { token } = await registerWorker(url, psk, { node_id: `after-${i}-${n++}` });
        if (oldKids.has(kidOf(token))) continue;
        newKids.set(i, kidOf(token));
        newTokens.push(token);
      }
      return newKids.size === urls.length;
    }, 5000);
    const elapsed = Date.now() - started;
    t.log(`all 3 replicas signed with new kids ${elapsed} ms after the rotation answered`);
    t.true(elapsed <= 2000, `${elapsed} ms`);
    t.is(newKids.get(0), rotated.body.kid, 'replica 0 answers with the kid it now signs with');
    t.is(new Set(newKids.values()).size, 3, 'still one key per replica');

    // Tokens signed before the rotation verify on every replica, as do the new ones.
    const jwks = await call<{ keys: { kid: string }[] }>(urls[1]!, '/.well-known/jwks.json', { token: null });
    for (const kid of [...oldKids, ...newKids.values()])
      t.true(
        jwks.body.keys.some((k) => k.kid === kid),
        `${kid} is published`,
      );
    for (const token of [...before.map((w) => w.token), ...newTokens])
      for (const url of urls) {
        const res = await call(url, '/status', { token, json: { health: { ok: true } } });
        t.is(res.status, 200, `${kidOf(token)} on ${url}: ${JSON.stringify(res.body)}`);
      }
  },
);
