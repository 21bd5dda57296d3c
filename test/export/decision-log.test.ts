import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { call, eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { type Sink, startSink } from './sink.js';

const EXPORT_TOKEN = 'export-sink-token-never-logged-0123456789';
const UPLOAD_LIMIT = 4096;
const PATH = '/v1/data/cynode/register/decision';
const worker = { ...SEED_WORKER, psk: 'psk_never_exported_0123' };

let gw: BootedGateway;
let sink: Sink;
const logs = captureLogger();

test.before(async () => {
  sink = await startSink();
  gw = await bootGateway({
    logger: logs.logger,
    env: {
      CYNODE_DECISION_LOG_EXPORT_URL: sink.url,
      CYNODE_DECISION_LOG_EXPORT_TOKEN: EXPORT_TOKEN,
      CYNODE_DECISION_LOG_EXPORT_UPLOAD_SIZE_LIMIT_BYTES: String(UPLOAD_LIMIT),
      CYNODE_DECISION_LOG_EXPORT_MIN_DELAY_MS: '50',
      CYNODE_DECISION_LOG_EXPORT_MAX_DELAY_MS: '200',
    },
  });
});
test.after.always(async () => {
  await gw?.stop();
  await sink?.close();
});

/** Makes `n` decisions through `POST /v1/data`, every third one denied; returns their ids. */
async function decide(n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += 10) {
    const batch = Array.from({ length: Math.min(10, n - i) }, (_, j) => {
      const subject = (i + j) % 3 === 0 ? { ...worker, region: 'mars-1' } : worker;
      return call<{ decision_id: string }>(gw.url(), PATH, { json: { input: { action: 'register', subject } } });
    });
    for (const answer of await Promise.all(batch)) ids.push(answer.body.decision_id);
  }
  return ids;
}

async function recordedDecisions(): Promise<number> {
  await gw.gateway.decisionLog.flush();
  const [row] = (await gw.gateway.db.knex('decision_log').count('* as n')) as { n: string }[];
  return Number(row!.n);
}

const exportedIds = () => new Set(sink.events().map((e) => e.decision_id as string));

test.serial('every decision reaches the sink in OPA decision-log format, in gzip chunks under the upload limit', async (t) => {
  const ids = await decide(300);
  await eventually(() => ids.every((id) => exportedIds().has(id)), 15_000);
  // Nothing but the decisions the gateway made, each once: the count equals the PostgreSQL log's.
  await eventually(async () => exportedIds().size === (await recordedDecisions()), 5000);
  t.is(sink.events().length, exportedIds().size);

  t.true(sink.accepted.length > 1, 'several uploads at a 4 KiB limit');
  for (const upload of sink.accepted) {
    t.true(upload.bytes <= UPLOAD_LIMIT);
    t.is(upload.headers['content-encoding'], 'gzip');
    t.is(upload.headers['content-type'], 'application/json');
    t.is(upload.headers.authorization, `Bearer ${EXPORT_TOKEN}`);
  }
  const byId = new Map(sink.events().map((e) => [e.decision_id, e]));
  const allowed = byId.get(ids[1]!)!;
  t.is(allowed.path, 'cynode/register/decision');
  t.deepEqual(allowed.result, { allow: true, reasons: [] });
  t.deepEqual(allowed.bundles, { cynode: { revision: 'test-suite' } });
  t.is(allowed.input.subject.psk, '[MASKED]');
  t.deepEqual(allowed.masked, ['/input/subject/psk']);
  t.is(allowed.requested_by, 'admin');
  t.regex(allowed.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  t.true(allowed.metrics.timer_rego_query_eval_ns > 0);
  t.is(typeof allowed.labels.id, 'string');
  t.is(typeof allowed.labels.version, 'string');
  t.is(typeof allowed.labels.replica, 'string');
  t.deepEqual(byId.get(ids[0]!)!.result, { allow: false, reasons: ['region_not_allowed'] });
  t.false(JSON.stringify(sink.events()).includes(worker.psk));

  const status = await call<Record<string, any>>(gw.url(), '/v1/status');
  t.is(status.body.export.decisionLog.enabled, true);
  t.is(status.body.export.decisionLog.uploaded, sink.events().length);
  t.is(status.body.export.decisionLog.dropped, 0);
  t.false(JSON.stringify(status.body).includes(EXPORT_TOKEN));
  const figures = {
    events: sink.events().length,
    uploads: sink.accepted.length,
    bytesPerEventCompressed: sink.accepted.reduce((sum, u) => sum + u.bytes, 0) / sink.events().length,
  };
  t.log(JSON.stringify(figures));
});

test.serial('a sink answering 500 gets the same events again, later, with backoff; failures are counted', async (t) => {
  sink.status = 500;
  const refusedBefore = sink.refused;
  const ids = await decide(40);
  await eventually(() => sink.refused >= refusedBefore + 2, 10_000);
  t.false(ids.some((id) => exportedIds().has(id)));
  const metrics = await call<string>(gw.url(), '/metrics');
  t.regex(metrics.body, /cynode_decision_log_export_failed_total [1-9]/);
  const status = await call<Record<string, any>>(gw.url(), '/v1/status');
  t.true(status.body.export.decisionLog.failedUploads >= 2);
  t.is(status.body.export.decisionLog.lastError.httpStatus, 500);

  sink.status = 200;
  await eventually(() => ids.every((id) => exportedIds().has(id)), 15_000);
  t.is(sink.events().length, exportedIds().size, 'a refused upload is not counted as delivered, so nothing arrives twice');
  t.is((await call<Record<string, any>>(gw.url(), '/v1/status')).body.export.decisionLog.retries, 0);
});

test.serial('the export token never reaches a log line', (t) => {
  t.true(logs.lines.some((line) => line.includes('decision-log upload failed')));
  t.false(logs.lines.some((line) => line.includes(EXPORT_TOKEN)));
});
