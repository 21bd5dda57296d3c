import { api } from '../api.js';
import { lineChart } from '../chart.js';
import { h, replace, table, when } from '../dom.js';
import type { Page } from './page.js';

interface Budget {
  scope: string;
  id: string;
  limit_usd: number;
  spent_usd: number;
  reserved_usd: number;
  remaining_usd: number;
  updated_at: string;
}
interface Spend {
  total_usd: number;
  calls: number;
  hours: { hour: string; cost_usd: number; calls: number }[];
  top_tasks: { task_id: string; cost_usd: number; calls: number }[];
  top_users: { user_id: string; cost_usd: number; calls: number }[];
  reservations: { held: number; held_usd: number };
}

const usd = (n: number) => `$${n.toFixed(4)}`;
const DAYS = 7;

/** Spend: budgets per scope, settled spend per hour over a week, reservations held, top tasks and users. */
export const spendPage: Page = async (root) => {
  const since = new Date(Date.now() - DAYS * 864e5);
  since.setUTCMinutes(0, 0, 0);
  const [{ budgets }, spend] = await Promise.all([
    api<{ budgets: Budget[] }>('GET', '/v1/budgets'),
    api<Spend>('GET', `/v1/spend?since=${encodeURIComponent(since.toISOString())}`),
  ]);
  const scopes = ['task', 'user', 'subject'];
  replace(
    root,
    h(
      'p',
      {},
      `${usd(spend.total_usd)} over ${spend.calls} settled api.calls in the last ${DAYS} days; ${spend.reservations.held} reservations held (${usd(spend.reservations.held_usd)}).`,
    ),
    spendChart(spend, since),
    ...scopes.map((scope) =>
      table(
        `Budgets per ${scope}`,
        ['Id', 'Spent', 'Reserved', 'Limit', 'Used', 'Remaining', 'Updated'],
        budgets
          .filter((b) => b.scope === scope)
          .map((b) => [b.id, usd(b.spent_usd), usd(b.reserved_usd), usd(b.limit_usd), meter(b), usd(b.remaining_usd), when(b.updated_at)]),
        'none set.',
      ),
    ),
    table(
      'Top tasks',
      ['Task', 'Spent', 'Calls'],
      spend.top_tasks.map((t) => [t.task_id, usd(t.cost_usd), String(t.calls)]),
      'no spend yet.',
    ),
    table(
      'Top users',
      ['User', 'Spent', 'Calls'],
      spend.top_users.map((u) => [u.user_id, usd(u.cost_usd), String(u.calls)]),
      'no spend yet.',
    ),
  );
};

function meter(b: Budget): HTMLElement {
  const used = b.limit_usd > 0 ? Math.min(1, (b.spent_usd + b.reserved_usd) / b.limit_usd) : 1;
  return h(
    'meter',
    { min: 0, max: 1, value: used.toFixed(3), 'aria-label': `${b.scope} ${b.id}: ${Math.round(used * 100)}% used` },
    `${Math.round(used * 100)}%`,
  );
}

function spendChart(spend: Spend, since: Date): HTMLElement {
  const by = new Map(spend.hours.map((x) => [Date.parse(x.hour), x.cost_usd]));
  const hours = Array.from({ length: DAYS * 24 + 1 }, (_, i) => since.getTime() + i * 36e5);
  return lineChart({
    title: 'Settled spend per hour (USD)',
    labels: hours.map((t) => new Date(t).toISOString().slice(5, 13).replace('T', ' ') + 'h'),
    series: [{ name: 'USD', className: 'spend', values: hours.map((t) => Number((by.get(t) ?? 0).toFixed(6))) }],
    summary: `${usd(spend.total_usd)} in the last ${DAYS} days`,
  });
}
