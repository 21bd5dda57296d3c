/**
 * `npm run bench:export`: decision-log export figures, printed as one JSON object.
 *  - exporter: the exporter alone, N decision events enqueued at once to a loopback sink that
 *    gunzips and parses every upload: events/s end to end, compressed bytes per event, uploads,
 *    and what `enqueue` costs the request path (µs per event).
 *  - gateway: a real gateway on PostgreSQL making N decisions through `decide` (recorded in the
 *    hash-chained log and exported): events/s until the sink has them all, bytes per event.
 * Everything runs on 127.0.0.1 only.
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import type { DecisionEvent } from '../src/decisions/index.js';
import { maskInput } from '../src/decisions/index.js';
import { createExportMetrics } from '../src/decisions/metrics.js';
import { createDecisionExporter } from '../src/export/decision-log.js';
import { createHttpClient } from '../src/lib/http-client.js';
import { createRegistry } from '../src/metrics/index.js';
import { bootGateway } from '../test/helpers/boot.js';
import { SEED_WORKER } from '../test/helpers/fixtures.js';
import { eventually } from '../test/helpers/http.js';
import { startSink, type Sink } from '../test/export/sink.js';

const N = Number(process.env.BENCH_EXPORT_EVENTS ?? 20_000);
const MASK = ['/subject/psk', '/subject/token'];

function event(i: number): DecisionEvent {
  const masked = maskInput({ action: 'register', subject: { ...SEED_WORKER, psk: `psk_${i}` }, request: { n: i } }, MASK);
  return {
    decision_id: randomUUID(),
    path: 'cynode/register/decision',
    input: masked.input,
    result: { allow: i % 3 !== 0, reasons: i % 3 === 0 ? ['region_not_allowed'] : [] },
    erased: masked.erased,
    revision: 'bench',
    bundle_digest: 'd'.repeat(64),
    requested_by: 'admin',
    timestamp: new Date(),
    eval_ns: 20_000 + (i % 1000),
  };
}

const figures = (sink: Sink, ms: number) => {
  const bytes = sink.accepted.reduce((sum, u) => sum + u.bytes, 0);
  const events = sink.events().length;
  return {
    events,
    seconds: Math.round(ms) / 1000,
    eventsPerSecond: Math.round((events / ms) * 1000),
    uploads: sink.accepted.length,
    bytesPerEventCompressed: Math.round((bytes / events) * 10) / 10,
  };
};

async function benchExporter(): Promise<Record<string, unknown>> {
  const sink = await startSink();
  const http = createHttpClient({ maxSockets: 4 });
  const exporter = createDecisionExporter(
    {
      url: new URL(sink.url),
      token: 'bench-token',
      timeoutMs: 10_000,
      uploadSizeLimitBytes: 32_768,
      bufferSizeLimitEvents: N * 2,
      minDelayMs: 10,
      maxDelayMs: 20,
      flushTimeoutMs: 5000,
    },
    {
      http,
      logger: pino({ level: 'silent' }),
      metrics: createExportMetrics(createRegistry()),
      labels: { id: 'bench', version: '0', replica: 'bench' },
    },
  );
  const events = Array.from({ length: N }, (_, i) => event(i));
  const started = performance.now();
  for (const e of events) exporter.enqueue(e);
  const enqueueUs = ((performance.now() - started) * 1000) / N;
  await eventually(() => sink.events().length >= N, 120_000, 5);
  const result = { ...figures(sink, performance.now() - started), enqueueMicrosPerEvent: Math.round(enqueueUs * 100) / 100 };
  await exporter.stop();
  http.close();
  await sink.close();
  return result;
}

async function benchGateway(): Promise<Record<string, unknown>> {
  const sink = await startSink();
  const gw = await bootGateway({
    env: {
      CYNODE_DECISION_LOG_EXPORT_URL: sink.url,
      CYNODE_DECISION_LOG_EXPORT_MIN_DELAY_MS: '10',
      CYNODE_DECISION_LOG_EXPORT_MAX_DELAY_MS: '20',
      CYNODE_DECISION_LOG_EXPORT_BUFFER_SIZE_LIMIT_EVENTS: String(N * 2),
    },
  });
  try {
    const started = performance.now();
    for (let i = 0; i < N; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, N - i) }, (_, j) =>
          gw.gateway.decisions.decide('cynode/register/decision', { action: 'register', subject: { ...SEED_WORKER, n: i + j } }, 'bench'),
        ),
      );
    }
    const decidedMs = performance.now() - started;
    await eventually(() => sink.events().length >= N, 120_000, 5);
    return { ...figures(sink, performance.now() - started), decisionsPerSecond: Math.round((N / decidedMs) * 1000) };
  } finally {
    await gw.stop();
    await sink.close();
  }
}

const exporter = await benchExporter();
const gateway = await benchGateway();
console.log(JSON.stringify({ events: N, exporter, gateway }, null, 2));
