import { readFileSync } from 'node:fs';
import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { buildCustomBundle } from '../helpers/bundle.js';
import { call, eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { type Sink, startSink } from './sink.js';

const STATUS_TOKEN = 'status-sink-token-never-logged-0123456789';

let gw: BootedGateway;
let sink: Sink;
const logs = captureLogger();

test.before(async () => {
  sink = await startSink();
  gw = await bootGateway({
    logger: logs.logger,
    env: { CYNODE_STATUS_URL: sink.url, CYNODE_STATUS_TOKEN: STATUS_TOKEN, CYNODE_STATUS_PERIOD_MS: '300' },
  });
});
test.after.always(async () => {
  await gw?.stop();
  await sink?.close();
});

type Report = Record<string, any>;
const reports = () => sink.accepted.map((r) => r.body as Report);

test.serial('a report in OPA Status API format arrives at start, with the active revision', async (t) => {
  await eventually(() => reports().length > 0);
  const [first] = reports();
  const bundle = first!.bundles.cynode;
  t.is(bundle.name, 'cynode');
  t.is(bundle.active_revision, 'test-suite');
  t.is(bundle.type, 'snapshot');
  t.false(Number.isNaN(Date.parse(bundle.last_successful_activation)));
  t.false(Number.isNaN(Date.parse(bundle.last_successful_download)));
  t.is(bundle.code, undefined);
  t.deepEqual(first!.plugins.bundle, { state: 'OK' });
  t.is(typeof first!.labels.id, 'string');
  t.is(typeof first!.labels.version, 'string');
  t.is(typeof first!.metrics.prometheus, 'object');
  t.is(sink.accepted[0]!.headers.authorization, `Bearer ${STATUS_TOKEN}`);
  t.is(sink.accepted[0]!.headers['content-type'], 'application/json');
});

test.serial('activating a bundle sends a report with the new revision; the period keeps reporting', async (t) => {
  const next = await buildCustomBundle({}, { revision: 'export-status-r2' });
  const before = reports().length;
  await gw.gateway.policy.activate(next, async () => readFileSync(next));
  await eventually(() => reports().some((r) => r.bundles.cynode.active_revision === 'export-status-r2'), 2000);
  const count = reports().length;
  await eventually(() => reports().length >= count + 2, 3000);
  t.true(reports().length > before);

  const status = await call<Record<string, any>>(gw.url(), '/v1/status');
  t.is(status.body.export.status.enabled, true);
  t.true(status.body.export.status.sent >= 3);
  t.is(status.body.export.decisionLog.enabled, false);
});

test.serial('a failing status sink is counted and logged once, without its token', async (t) => {
  sink.status = 500;
  const refused = sink.refused;
  await eventually(() => sink.refused >= refused + 2, 3000);
  const metrics = (await call<string>(gw.url(), '/metrics')).body;
  t.regex(metrics, /cynode_status_reports_total\{result="error"\} [1-9]/);
  t.is(logs.lines.filter((line) => line.includes('status report failed')).length, 1);
  t.false(logs.lines.some((line) => line.includes(STATUS_TOKEN)));
  sink.status = 200;
});
