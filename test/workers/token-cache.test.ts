import test from 'ava';
import pino from 'pino';
import { GatewayError } from '../../src/errors/index.js';
import { createKeyStore, type KeyStore } from '../../src/keys/index.js';
import { migrateLatest, openDatabase } from '../../src/storage/index.js';
import { createWorkerTokens, type WorkerTokens } from '../../src/workers/tokens.js';
import { testConfig } from '../helpers/config.js';
import { jwtAttacks } from '../helpers/jwt-attacks.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

// The verified-token cache of worker JWTs, on real ES256 keys published in PostgreSQL: only
// the exact string verified before is served from it (every altered or forged token is
// verified in full and refused), an entry never outlives its token's `exp`, and the cache
// holds at most its size, dropping the least recently used token first.

const quiet = pino({ level: 'silent' });
const ISSUER = 'https://cynode-gateway.test';
let pgDb: TestDatabase;
let close: () => Promise<void>;
let keys: KeyStore;

test.before(async () => {
  pgDb = await createTestDatabase();
  const db = await openDatabase(testConfig({ DATABASE_URL: pgDb.url }).database, quiet);
  await migrateLatest(db.knex);
  keys = await createKeyStore({ knex: db.knex, logger: quiet, rotationMs: 3_600_000, maxTokenTtlMs: 3_600_000 });
  close = () => db.close();
});
test.after.always(async () => {
  keys?.close();
  await close?.();
  await pgDb?.drop();
});

/**
 * Worker tokens over the real key store, and how many full verifications they have made so
 * far: each one resolves the key set through `jwks` (a token served from the cache does not).
 */
function tokensOf(options: { ttlMs?: number; cacheSize?: number } = {}): { tokens: WorkerTokens; full: () => number } {
  let full = 0;
  const counted: KeyStore = {
    ...keys,
    jwks: (fresh) => {
      full++;
      return keys.jwks(fresh);
    },
  };
  const tokens = createWorkerTokens({ keys: counted, issuer: ISSUER, ttlMs: options.ttlMs ?? 600_000, cacheSize: options.cacheSize });
  return { tokens, full: () => full };
}

/** The error code a verification ends with, or 'ok'. */
const outcome = (tokens: WorkerTokens, token: string) =>
  tokens.verify(token).then(
    () => 'ok',
    (err: unknown) => (err instanceof GatewayError ? err.code : String(err)),
  );

test('a cached token is served again without a verification; the same claims come back', async (t) => {
  const { tokens, full } = tokensOf();
  const { token } = await tokens.issue('cache-node-1', 'session-1');
  const first = await tokens.verify(token);
  const before = full();
  const again = await tokens.verify(token);
  t.is(full(), before, 'served from the cache');
  t.deepEqual(again, first);
  t.like(first, { nodeId: 'cache-node-1', sessionId: 'session-1' });
});

test('with the genuine token cached, every altered or forged token is verified in full and refused', async (t) => {
  const { tokens } = tokensOf();
  const { token: genuine } = await tokens.issue('cache-node-2', 'session-2');
  await tokens.verify(genuine);
  const attacks = await jwtAttacks({ genuine, gatewayKey: keys.current(), publicJwk: (await keys.jwks()).keys[0]! });
  for (const attack of attacks) {
    t.regex(await outcome(tokens, attack.token), /^token_(invalid|expired)$/, attack.name);
    // Refused again: a refusal is never remembered as a verified token.
    t.regex(await outcome(tokens, attack.token), /^token_(invalid|expired)$/, `${attack.name} (again)`);
  }
  // A byte appended, or the genuine token inside a longer string: other strings, verified and refused.
  for (const altered of [`${genuine}A`, `${genuine}.`, ` ${genuine}`, genuine.slice(0, -1)])
    t.is(await outcome(tokens, altered), 'token_invalid', altered.slice(-8));
  t.is(await outcome(tokens, genuine), 'ok', 'the genuine token still works');
});

test('a cached token stops at its exp: the entry never outlives the token', async (t) => {
  // exp is in whole seconds (the second issued in, plus the ttl's): a 2 s token issued now has
  // more than 1 s left, room for the first checks under load, and expires within 2 s. (A 1 s one
  // issued late in a second could expire before the first check.)
  const { tokens, full } = tokensOf({ ttlMs: 2000 });
  const { token, expiresAt } = await tokens.issue('cache-node-3', 'session-3');
  t.is(await outcome(tokens, token), 'ok');
  t.is(await outcome(tokens, token), 'ok', 'cached');
  await new Promise((r) => setTimeout(r, Math.max(0, expiresAt.getTime() - Date.now()) + 20));
  const before = full();
  t.is(await outcome(tokens, token), 'token_expired');
  t.is(full(), before + 1, 'the expired entry was dropped and the token verified again');
  t.is(await outcome(tokens, token), 'token_expired', 'and it stays refused');
});

test('the cache is bounded: it holds at most its size, dropping the least recently used token first', async (t) => {
  const { tokens, full } = tokensOf({ cacheSize: 3 });
  const issued = await Promise.all([0, 1, 2, 3, 4].map((i) => tokens.issue(`cache-node-lru-${i}`, `s-${i}`)));
  const [a, b, c, d, e] = issued.map((x) => x.token) as [string, string, string, string, string];
  for (const token of [a, b, c]) await tokens.verify(token);
  t.is(tokens.cached(), 3);
  await tokens.verify(a); // a is now the most recently used: b is the least
  await tokens.verify(d);
  t.is(tokens.cached(), 3, 'never more than its size');
  let before = full();
  await tokens.verify(a);
  await tokens.verify(c);
  await tokens.verify(d);
  t.is(full(), before, 'a, c and d are still cached');
  before = full();
  await tokens.verify(b);
  t.is(full(), before + 1, 'b was dropped and is verified in full');
  for (const token of [e, a, b, c, d]) await tokens.verify(token);
  t.is(tokens.cached(), 3);
  const { tokens: many } = tokensOf({ cacheSize: 50 });
  for (let i = 0; i < 120; i++) await many.verify((await many.issue(`cache-node-many-${i}`, `s-${i}`)).token);
  t.is(many.cached(), 50);
});

test('verifyForRenewal never uses or fills the cache', async (t) => {
  const { tokens, full } = tokensOf();
  const { token } = await tokens.issue('cache-node-4', 'session-4');
  await tokens.verifyForRenewal(token, 60_000);
  t.is(tokens.cached(), 0);
  await tokens.verify(token);
  const before = full();
  await tokens.verifyForRenewal(token, 60_000);
  t.is(full(), before + 1);
});
