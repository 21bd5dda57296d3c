import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { call } from '../helpers/http.js';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
let open: BootedGateway;
let guarded: BootedGateway;

test.before(async () => {
  [open, guarded] = await Promise.all([bootGateway({ roles: ['control'] }), bootGateway({ env: { CYNODE_METRICS_TOKEN: METRICS_TOKEN } })]);
});
test.after.always(async () => {
  await Promise.all([open?.stop(), guarded?.stop()]);
});

test('without auth.metricsToken /metrics is public, as Prometheus scrapers expect', async (t) => {
  const res = await call(open.url(), '/metrics', { token: null });
  t.is(res.status, 200);
  t.regex(String(res.body), /cynode_/);
  t.is((await call(open.url(), '/metrics', { token: 'anything' })).status, 200);
});

test('with auth.metricsToken every role asks for it (or the admin token) and answers 401 otherwise', async (t) => {
  for (const role of ['control', 'mcp', 'egress'] as const) {
    const base = guarded.url(role);
    const none = await call<{ error: { code: string } }>(base, '/metrics', { token: null });
    t.is(none.status, 401, role);
    t.is(none.body.error.code, 'unauthorized');
    t.is((await call(base, '/metrics', { token: 'not-the-token' })).status, 401, role);
    const scraped = await call(base, '/metrics', { token: METRICS_TOKEN });
    t.is(scraped.status, 200, role);
    t.regex(String(scraped.body), /cynode_/);
    t.is((await call(base, '/metrics', { token: TEST_ADMIN_TOKEN })).status, 200, role);
  }
  // The metrics token opens nothing else.
  t.is((await call(guarded.url(), '/v1/workers', { token: METRICS_TOKEN })).status, 401);
});
