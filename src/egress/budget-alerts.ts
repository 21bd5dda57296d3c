import type { Knex } from 'knex';
import { errorMessage } from '../lib/error-message.js';
import type { HttpClient } from '../lib/http-client.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { type Periodic, startPeriodic } from '../lib/periodic.js';
import type { Logger } from '../logging/index.js';
import { type AuditLog, auditEvent } from './audit.js';
import { usd } from './budgets.js';
import type { EgressMetrics } from './metrics.js';

/**
 * Soft-limit alerts. A settlement that takes a budget's period spend to its soft limit claims
 * one `budget_alerts` row (its key is the budget, the period and the kind, so many replicas
 * still make one). Whichever replica claims the row next raises the metric and the audit row,
 * then posts the webhook, retried with backoff; a claim lapses if that replica dies.
 */
export interface BudgetAlerts {
  /** Delivers due alerts soon (a settlement just crossed a soft limit). */
  kick(): void;
  /** Delivers due alerts (and retries) every `intervalMs`. */
  start(intervalMs: number): Periodic;
  /** Resolves once the delivery under way, if any, has finished (shutdown, tests). */
  idle(): Promise<void>;
}

/** What alerts are delivered with. */
export interface BudgetAlertDeps {
  knex: Knex;
  now: () => number;
  http: HttpClient;
  /** Where alerts are posted; null: metric and audit row only. */
  webhookUrl: string | null;
  timeoutMs: number;
  maxAttempts: number;
  audit: AuditLog;
  metrics?: EgressMetrics;
  logger: Logger;
}

/** A claimed `budget_alerts` row. */
interface AlertRow {
  scope: string;
  subject_id: string;
  model: string;
  period_start: Date;
  kind: string;
  call_id: string;
  spent_micros: string;
  threshold_micros: string;
  limit_micros: string;
  crossed_at: Date;
  attempts: number;
}

/** A claim this long is another replica's to take over if the webhook has not answered. */
const CLAIM_MS = 60_000;
const BACKOFF_MAX_MS = 300_000;
const backoffMs = (attempts: number) => Math.min(BACKOFF_MAX_MS, 1000 * 2 ** (attempts - 1));

/** The webhook's body: the budget and its numbers, never a credential or a token. */
function alertBody(a: AlertRow): Record<string, unknown> {
  return {
    type: 'budget.soft_limit',
    scope: a.scope,
    id: a.subject_id,
    model: a.model === '' ? null : a.model,
    period_start: new Date(a.period_start).toISOString(),
    crossed_at: new Date(a.crossed_at).toISOString(),
    spent_usd: usd(a.spent_micros),
    soft_limit_usd: usd(a.threshold_micros),
    limit_usd: usd(a.limit_micros),
  };
}

const CLAIM_BATCH = 20;
// Claims due rows: one replica each, until the claim lapses.
const CLAIM = `
  UPDATE budget_alerts a SET attempts = a.attempts + 1, next_attempt_at = ?
  FROM (SELECT scope, subject_id, model, period_start, kind FROM budget_alerts
        WHERE done_at IS NULL AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ${CLAIM_BATCH} FOR UPDATE SKIP LOCKED) d
  WHERE (a.scope, a.subject_id, a.model, a.period_start, a.kind) = (d.scope, d.subject_id, d.model, d.period_start, d.kind)
  RETURNING a.*`;

const keyOf = (a: AlertRow) => ({ scope: a.scope, subject_id: a.subject_id, model: a.model, period_start: a.period_start, kind: a.kind });

/** The first claim of an alert raises it: the metric and the audit row, once. */
async function raise(deps: BudgetAlertDeps, a: AlertRow): Promise<void> {
  deps.metrics?.budgetSoftLimits.inc({ scope: a.scope });
  await deps.audit.record(
    auditEvent(a.call_id, 'egress', {
      subject_kind: 'budget',
      subject_id: `${a.scope}:${a.subject_id}${a.model ? `:${a.model}` : ''}`,
      ...(a.scope === 'task' && { task_id: a.subject_id }),
      outcome: 'ok',
      reasons: ['budget_soft_limit'],
      cost_usd: usd(a.spent_micros),
    }),
  );
}

/** Posts the alert once; true when the receiver took it (2xx). */
async function post(deps: BudgetAlertDeps, log: Logger, a: AlertRow, url: string): Promise<boolean> {
  try {
    const res = await deps.http.request(new URL(url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(alertBody(a)),
      totalTimeoutMs: deps.timeoutMs,
      maxResponseBytes: 65_536,
    });
    res.destroy();
    return res.status >= 200 && res.status < 300;
  } catch (err) {
    log.warn({ err: errorMessage(err), scope: a.scope, attempts: a.attempts }, 'budget alert webhook failed');
    return false;
  }
}

/** One claimed alert: raised on its first claim, posted, then done, retried later, or given up. */
async function deliver(deps: BudgetAlertDeps, log: Logger, a: AlertRow): Promise<unknown> {
  const finish = (outcome: string) =>
    deps
      .knex('budget_alerts')
      .where(keyOf(a))
      .update({ done_at: new Date(deps.now()), outcome });
  if (a.attempts === 1) await raise(deps, a);
  if (deps.webhookUrl === null) return finish('no_webhook');
  if (await post(deps, log, a, deps.webhookUrl)) return finish('delivered');
  if (a.attempts >= deps.maxAttempts) {
    log.error({ scope: a.scope, attempts: a.attempts }, 'budget alert webhook gave up');
    return finish('failed');
  }
  return deps
    .knex('budget_alerts')
    .where(keyOf(a))
    .update({ next_attempt_at: new Date(deps.now() + backoffMs(a.attempts)) });
}

/** Soft-limit alerts over `budget_alerts`, posted with `http`. */
export function createBudgetAlerts(deps: BudgetAlertDeps): BudgetAlerts {
  const log = deps.logger.child({ component: 'budget-alerts' });
  // Every settlement kicks a round: while the database is down, the failures are logged once
  // per interval with a count, and their end once.
  const failures = createLogThrottle(log);
  let running: Promise<void> | undefined;
  let again = false;

  const round = async () => {
    do {
      again = false;
      const at = deps.now();
      const { rows } = (await deps.knex.raw(CLAIM, [new Date(at + CLAIM_MS), new Date(at)])) as { rows: AlertRow[] };
      for (const a of rows) await deliver(deps, log, a);
      if (rows.length === CLAIM_BATCH) again = true;
    } while (again);
  };

  const run = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = round()
      .then(
        () => failures.recovered('delivering budget alerts works again'),
        (err: unknown) => failures.failure({ err: errorMessage(err) }, 'delivering budget alerts failed'),
      )
      .finally(() => (running = undefined));
    return running;
  };

  return {
    kick: () => void run(),
    start: (intervalMs) =>
      startPeriodic(run, intervalMs, (err) => failures.failure({ err: errorMessage(err) }, 'delivering budget alerts failed')),
    async idle() {
      while (running) await running;
    },
  };
}
