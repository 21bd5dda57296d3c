import { randomBytes } from 'node:crypto';
import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, pskId, pskSecretPart, registerFrom } from '../helpers/workers.js';

/*
 * PSK brute force against POST /register: failures are counted per source address in a
 * sliding window; past the limit the source gets 429 with Retry-After — even with the right
 * PSK — until its failures age out, and then it is let in again.
 */

const LIMIT = 5;
const WINDOW_MS = 2000;

let gw: BootedGateway;
let port: number;
let psk: string;
const logs = captureLogger();

/** `POST /register` from a chosen loopback source address. */
const register = (pskHeader: string | null, source?: string, extra?: Record<string, string>, nodeId?: string) =>
  registerFrom(port, pskHeader, source, extra, nodeId);

const guess = () => `cynpsk_${pskId(psk)}_${randomBytes(32).toString('base64url')}`;

test.before(async () => {
  gw = await bootGateway({
    env: { CYNODE_PSK_FAILURE_LIMIT: String(LIMIT), CYNODE_PSK_FAILURE_WINDOW_MS: String(WINDOW_MS) },
    roles: ['control'],
    logger: logs.logger,
  });
  port = gw.gateway.listening[0]!.port;
  psk = (await createPsk(gw.url())).secret;
});

test.after.always(() => gw?.stop());

test.serial(
  'wrong PSKs are throttled per source: 429 with a bounded Retry-After, even for the right PSK, until the window passes',
  async (t) => {
    const source = '127.0.0.11';
    const wrong = [guess(), 'cynpsk_000000000000_' + 'A'.repeat(43), 'not-a-psk', '', psk.slice(0, -1)];
    for (const presented of wrong) {
      const res = await register(presented === '' ? null : presented, source);
      t.is(res.status, 401);
      t.is(res.code, 'psk_invalid');
    }
    const throttledAt = Date.now();
    const blocked = await register(guess(), source);
    t.is(blocked.status, 429);
    t.is(blocked.code, 'rate_limited');
    const retryAfter = Number(blocked.retryAfter);
    t.true(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= WINDOW_MS / 1000, `Retry-After ${blocked.retryAfter}`);

    // While throttled: the right PSK waits too, and neither more guesses nor spoofed forwarding headers change anything.
    const right = await register(psk, source);
    t.is(right.status, 429, 'the right PSK is refused while the source is throttled');
    for (let i = 0; i < 20; i++) {
      const res = await register(guess(), source, {
        'x-forwarded-for': `10.0.0.${i}`,
        'x-real-ip': `10.1.0.${i}`,
        forwarded: `for=10.2.0.${i}`,
      });
      t.is(res.status, 429);
      t.true(Number(res.retryAfter) <= WINDOW_MS / 1000, 'guesses while throttled do not extend the wait');
    }
    // Another address is not locked out by this one.
    t.is((await register(psk, '127.0.0.12')).status, 200);

    // The wait is bounded by the window: once the failures age out the right PSK gets in.
    await new Promise((r) => setTimeout(r, WINDOW_MS + 100 - (Date.now() - throttledAt)));
    const after = await register(psk, source);
    t.is(after.status, 200, JSON.stringify(after));
    t.log(`throttled after ${LIMIT} failures; admitted again ${Date.now() - throttledAt} ms later (window ${WINDOW_MS} ms)`);
  },
);

test.serial('a burst of concurrent guesses is counted one by one: at most the limit is ever checked per window', async (t) => {
  const source = '127.0.0.21';
  const started = Date.now();
  const burst = await Promise.all(Array.from({ length: 100 }, () => register(guess(), source)));
  const elapsed = Date.now() - started;
  const checked = burst.filter((r) => r.status === 401).length;
  const throttled = burst.filter((r) => r.status === 429).length;
  t.log(`100 concurrent guesses in ${elapsed} ms: ${checked} checked (401), ${throttled} throttled (429)`);
  t.is(checked + throttled, 100, 'nothing but 401 and 429');
  t.true(burst.every((r) => (r.status === 401 ? r.code === 'psk_invalid' : r.code === 'rate_limited' && Number(r.retryAfter) >= 1)));
  // Exactly the limit per window (a burst slower than the window, on a loaded machine, earns one more window's worth).
  t.true(checked >= LIMIT && checked <= LIMIT * (1 + Math.floor(elapsed / WINDOW_MS)), `${checked} guesses checked`);

  // Legitimate concurrent registrations from one address (a fleet behind NAT) still all get in.
  const fleet = await Promise.all(Array.from({ length: 20 }, (_, i) => register(psk, '127.0.0.22', {}, `fleet-${i}`)));
  t.deepEqual(
    fleet.map((r) => r.status),
    fleet.map(() => 200),
  );
});

test.serial('guessed PSKs never reach the log', async (t) => {
  const presented = guess();
  t.is((await register(presented, '127.0.0.31')).status, 401);
  t.true(
    logs.lines.some((l) => l.includes('invalid or missing PSK')),
    'the failure is logged',
  );
  const text = logs.lines.join('\n');
  t.false(text.includes(pskSecretPart(presented)));
  t.false(text.includes(pskSecretPart(psk)));
  t.false(text.includes(TEST_ADMIN_TOKEN));
});
