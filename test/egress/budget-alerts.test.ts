import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createAuditLog } from '../../src/egress/audit.js';
import { type BudgetAlerts, createBudgetAlerts } from '../../src/egress/budget-alerts.js';
import { createLedger, type Hold, type Ledger } from '../../src/egress/ledger.js';
import { createEgressMetrics } from '../../src/egress/metrics.js';
import { createHttpClient } from '../../src/lib/http-client.js';
import type { Database } from '../../src/storage/index.js';
import { migratedDatabase } from './migrated-database.js';

let db: Database & { drop(): Promise<void> };
let sink: http.Server;
let sinkUrl = '';
const received: { status: number; body: Record<string, unknown> }[] = [];
let failNext = 0;

test.before(async () => {
  db = await migratedDatabase();
  // A loopback webhook sink that fails the next `failNext` posts with 503.
  sink = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const status = failNext > 0 ? 503 : 204;
      if (failNext > 0) failNext--;
      received.push({ status, body: JSON.parse(raw) as Record<string, unknown> });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/hooks/budget`;
});
test.after.always(async () => {
  sink?.close();
  await db?.drop();
});

let t0 = Date.parse('2026-12-01T10:00:00Z');
const now = () => t0;

/** One replica's ledger and alerts, over the shared database. */
function replica() {
  const logger = pino({ level: 'silent' });
  const audit = createAuditLog(db.knex, logger, { bufferSize: 100, flushIntervalMs: 10, enqueueTimeoutMs: 1000 });
  const registry = new Registry();
  const metrics = createEgressMetrics(registry);
  const client = createHttpClient({ maxSockets: 2 });
  const alerts: BudgetAlerts = createBudgetAlerts({
    knex: db.knex,
    now,
    http: client,
    webhookUrl: sinkUrl,
    timeoutMs: 2000,
    maxAttempts: 5,
    audit,
    metrics,
    logger,
  });
  const ledger: Ledger = createLedger({ knex: db.knex, now, onSoftLimit: () => alerts.kick() });
  const crossings = async () =>
    (await registry.getSingleMetric('cynode_budget_soft_limit_crossed_total')!.get()).values.reduce((n, v) => n + v.value, 0);
  return { ledger, alerts, audit, crossings, close: async () => (client.close(), audit.close()) };
}

const holds: Hold[] = [{ scope: 'task', subject_id: 'soft', required: true }];
const farAway = new Date('2030-01-01T00:00:00Z');

/** Admits and settles `n` calls of $0.05, spread over the replicas, all at once. */
async function spend(replicas: ReturnType<typeof replica>[], n: number) {
  const calls = Array.from({ length: n }, (_, i) => ({ id: randomUUID(), r: replicas[i % replicas.length]! }));
  await Promise.all(calls.map((c) => c.r.ledger.admit(c.id, holds, 0.1, [], farAway)));
  await Promise.all(calls.map((c) => c.r.ledger.settle(c.id, 0.05, 'settled', 0)));
  await Promise.all(replicas.map((r) => r.alerts.idle()));
}

test.serial(
  'a soft limit crossed on two replicas at once is alerted once: one metric, one audit row, one webhook received, retried with backoff',
  async (t) => {
    const replicas = [replica(), replica()];
    await replicas[0]!.ledger.setBudget('task', 'soft', 10, 'test', { period: 'day', softLimitUsd: 1 });
    failNext = 1;
    await spend(replicas, 40);
    t.deepEqual(
      received.map((r) => r.status),
      [503],
      'the first post failed',
    );
    // Not yet due again: the backoff holds it.
    await Promise.all(replicas.map((r) => (r.alerts.kick(), r.alerts.idle())));
    t.is(received.length, 1);
    t0 += 1_000;
    await Promise.all(replicas.map((r) => (r.alerts.kick(), r.alerts.idle())));
    t.deepEqual(
      received.map((r) => r.status),
      [503, 204],
    );
    t0 += 60_000;
    await Promise.all(replicas.map((r) => (r.alerts.kick(), r.alerts.idle())));
    t.is(received.filter((r) => r.status === 204).length, 1, 'received exactly once');
    const body = received[1]!.body;
    t.deepEqual(Object.keys(body).sort(), [
      'crossed_at',
      'id',
      'limit_usd',
      'model',
      'period_start',
      'scope',
      'soft_limit_usd',
      'spent_usd',
      'type',
    ]);
    t.like(body, {
      type: 'budget.soft_limit',
      scope: 'task',
      id: 'soft',
      model: null,
      soft_limit_usd: 1,
      limit_usd: 10,
      period_start: '2026-12-01T00:00:00.000Z',
    });
    t.true((body.spent_usd as number) >= 1);
    t.is(
      (await Promise.all(replicas.map((r) => r.crossings()))).reduce((a, b) => a + b, 0),
      1,
      'one metric increment across the replicas',
    );
    await Promise.all(replicas.map((r) => r.audit.flush()));
    const rows = await db.knex('api_audit').where({ subject_kind: 'budget' });
    t.is(rows.length, 1);
    t.like(rows[0], { subject_id: 'task:soft', outcome: 'ok', task_id: 'soft' });
    t.deepEqual(rows[0].reasons, ['budget_soft_limit']);
    t.like(await db.knex('budget_alerts').first(), { outcome: 'delivered', attempts: 2 });

    // The next day is a new period: crossing again is alerted again, once.
    t0 = Date.parse('2026-12-02T09:00:00Z');
    await spend(replicas, 40);
    t.is(received.filter((r) => r.status === 204).length, 2);
    t.like(received.at(-1)!.body, { period_start: '2026-12-02T00:00:00.000Z' });
    await Promise.all(replicas.map((r) => r.close()));
  },
);
