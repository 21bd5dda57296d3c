import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { call, eventually } from '../helpers/http.js';
import { type Sink, startSink } from './sink.js';

const BUFFER = 20;
const DECISIONS = 120;
const PATH = '/v1/data/cynode/register/decision';

let gw: BootedGateway;
let sink: Sink;

test.before(async () => {
  sink = await startSink();
  sink.status = 503;
  gw = await bootGateway({
    env: {
      CYNODE_DECISION_LOG_EXPORT_URL: sink.url,
      CYNODE_DECISION_LOG_EXPORT_BUFFER_SIZE_LIMIT_EVENTS: String(BUFFER),
      CYNODE_DECISION_LOG_EXPORT_MIN_DELAY_MS: '20',
      CYNODE_DECISION_LOG_EXPORT_MAX_DELAY_MS: '100',
      CYNODE_DECISION_LOG_EXPORT_FLUSH_TIMEOUT_MS: '200',
    },
  });
});
test.after.always(async () => {
  await gw?.stop();
  await sink?.close();
});

test('a full export buffer drops the oldest copies, counted in /metrics and /v1/status; PostgreSQL keeps every decision', async (t) => {
  const ids: string[] = [];
  for (let i = 0; i < DECISIONS; i++) {
    const answer = await call<{ decision_id: string }>(gw.url(), PATH, { json: { input: { action: 'register', subject: SEED_WORKER } } });
    t.is(answer.status, 200, 'a decision never waits for the export');
    ids.push(answer.body.decision_id);
  }
  const exported = (await call<Record<string, any>>(gw.url(), '/v1/status')).body.export.decisionLog;
  t.true(exported.dropped >= DECISIONS - BUFFER - exported.inFlight);
  t.is(exported.dropped + exported.buffered + exported.inFlight, DECISIONS, 'every decision is either waiting or counted as dropped');
  t.true(exported.buffered <= BUFFER);
  const metrics = (await call<string>(gw.url(), '/metrics')).body;
  const dropped = Number(/cynode_decision_log_export_dropped_total\{reason="buffer_full"\} (\d+)/.exec(metrics)?.[1]);
  t.true(dropped >= exported.dropped);

  await gw.gateway.decisionLog.flush();
  const stored = (await gw.gateway.db.knex('decision_log').whereIn('decision_id', ids).count('* as n')) as { n: string }[];
  t.is(Number(stored[0]!.n), DECISIONS);
  t.is((await gw.gateway.decisionLog.verify()).break, undefined);

  // The sink recovers: what is still buffered (the newest) arrives; the dropped never do, and
  // every decision is one or the other.
  sink.status = 200;
  const exportStatus = async () => (await call<Record<string, any>>(gw.url(), '/v1/status')).body.export.decisionLog;
  await eventually(async () => {
    const s = await exportStatus();
    return s.buffered === 0 && s.inFlight === 0 && s.retries === 0;
  }, 10_000);
  const final = await exportStatus();
  t.is(sink.events().length + final.dropped, DECISIONS);
  t.is(final.uploaded, sink.events().length);
  const arrived = new Set(sink.events().map((e) => e.decision_id as string));
  t.true(arrived.has(ids[ids.length - 1]!));
  t.false(arrived.has(ids[0]!));
  t.true(sink.refused > 0);
});
