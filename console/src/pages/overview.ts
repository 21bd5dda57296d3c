import { api, ApiError } from '../api.js';
import { lineChart } from '../chart.js';
import { ago, h, notice, replace, table, when } from '../dom.js';
import { confirmDialog } from './dialog.js';
import type { Page, PageContext } from './page.js';

const KILL_SWITCH = 'cloud_routing.enabled';
const JOB_STATES = ['queued', 'leased', 'succeeded', 'failed', 'dead_lettered', 'cancelled'];

interface Status {
  bundles: { cynode: { active: { revision: string; digest: string; source: string; activatedAt: string } | null; lastError: unknown } };
}
interface Replica {
  replica: string;
  revision: string;
  digest: string;
  activated_at: string;
  seen_at: string;
  live: boolean;
}
interface Setting {
  value: unknown;
  updatedBy: string;
  updatedAt: string;
}
interface Stats {
  total: { allow: number; deny: number; error: number };
  minutes: { minute: string; allow: number; deny: number }[];
}

/** Overview: the bundle this replica runs, the kill switch, queue depth, spend today and the decision rate. */
export const overviewPage: Page = async (root, ctx) => {
  const [status, replicas, setting, depth, spend, stats] = await Promise.all([
    api<Status>('GET', '/v1/status'),
    api<{ replicas: Replica[] }>('GET', '/v1/policy/replicas').then(
      (r) => r.replicas.filter((x) => x.live),
      () => [],
    ),
    killSwitch(),
    queueDepth(),
    api<{ total_usd: number; calls: number }>('GET', '/v1/spend').catch(() => undefined),
    api<Stats>('GET', '/v1/decisions/stats?since=1h'),
  ]);
  const active = status.bundles.cynode.active;
  replace(
    root,
    h(
      'section',
      { 'aria-labelledby': 'bundle-h' },
      h('h2', { id: 'bundle-h' }, 'Active bundle'),
      active
        ? h(
            'p',
            { 'data-testid': 'bundle' },
            `This replica runs revision ${active.revision} (from ${active.source}), active for ${age(active.activatedAt)}.`,
          )
        : notice('error', 'No bundle is active on this replica: every decision fails closed.'),
      table(
        'Per replica',
        ['Replica', 'Revision', 'Digest', 'Active for', 'Last seen'],
        replicas.map((r) => [r.replica, r.revision, r.digest.slice(0, 12), age(r.activated_at), when(r.seen_at)]),
        'no replica has reported yet.',
      ),
    ),
    killSwitchSection(setting, ctx, () => overviewPage(root, ctx)),
    h(
      'section',
      { 'aria-labelledby': 'queue-h' },
      h('h2', { id: 'queue-h' }, 'Queue depth'),
      table(
        'Jobs by state',
        ['State', 'Jobs'],
        JOB_STATES.map((s) => [h('a', { href: `#/jobs?state=${s}` }, s), String(depth.get(s) ?? 0)]),
      ),
    ),
    h(
      'section',
      { 'aria-labelledby': 'spend-h' },
      h('h2', { id: 'spend-h' }, 'Spend today'),
      h(
        'p',
        {},
        spend ? `$${spend.total_usd.toFixed(4)} over ${spend.calls} settled api.calls` : 'Spend figures are not available on this gateway.',
      ),
    ),
    h('section', { 'aria-labelledby': 'rate-h' }, h('h2', { id: 'rate-h' }, 'Decisions, last hour'), rateChart(stats)),
  );
};

/** Jobs per state, from the `cynode_jobs` gauge `/metrics` refreshes at each scrape (one query, whatever the queue's size). */
async function queueDepth(): Promise<Map<string, number>> {
  const res = await fetch('/metrics', { cache: 'no-store' });
  const text = res.ok ? await res.text() : '';
  const depth = new Map<string, number>();
  for (const match of text.matchAll(/^cynode_jobs\{state="(\w+)"\} (\d+)$/gm)) depth.set(match[1]!, Number(match[2]));
  return depth;
}

const age = (iso: string) => ago(Date.now() - Date.parse(iso)).replace(' ago', '');

async function killSwitch(): Promise<Setting | undefined> {
  try {
    return await api<Setting>('GET', `/v1/settings/${KILL_SWITCH}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined; // never set: cloud routing is on
    throw err;
  }
}

function killSwitchSection(setting: Setting | undefined, ctx: PageContext, reload: () => Promise<void>): HTMLElement {
  const enabled = setting === undefined || setting.value === true;
  const message = h('div', { class: 'status-line' });
  const button = h(
    'button',
    { type: 'button', class: enabled ? 'danger' : '', id: 'kill-switch' },
    enabled ? 'Stop cloud routing' : 'Resume cloud routing',
  );
  button.addEventListener('click', () => {
    const question = enabled
      ? 'Stop cloud routing? Cloud workers get no new jobs until it is resumed.'
      : 'Resume cloud routing? Cloud workers get jobs again.';
    void confirmDialog(question, enabled ? 'Stop cloud routing' : 'Resume cloud routing').then(async (yes) => {
      if (!yes) return button.focus();
      try {
        await api('PUT', `/v1/settings/${KILL_SWITCH}`, { value: !enabled });
        await reload();
        document.getElementById('kill-switch')?.focus();
      } catch (err) {
        replace(message, notice('error', `Refused: ${(err as Error).message}`));
      }
    });
  });
  return h(
    'section',
    { 'aria-labelledby': 'kill-h' },
    h('h2', { id: 'kill-h' }, 'Kill switch'),
    h(
      'p',
      { 'data-testid': 'kill-state' },
      enabled ? 'Cloud routing is ON. ' : 'Cloud routing is OFF. ',
      setting ? `Last set by ${setting.updatedBy} at ${when(setting.updatedAt)}.` : 'It has never been switched.',
    ),
    ctx.session.principal.kind === 'reader' ? h('p', { class: 'hint' }, 'Read-only sessions cannot flip it; the gateway refuses.') : null,
    button,
    message,
  );
}

function rateChart(stats: Stats): HTMLElement {
  const start = Math.floor(Date.now() / 60000) * 60000 - 59 * 60000;
  const by = new Map(stats.minutes.map((m) => [Date.parse(m.minute), m]));
  const minutes = Array.from({ length: 60 }, (_, i) => start + i * 60000);
  return lineChart({
    title: 'Decisions per minute',
    labels: minutes.map((t) => new Date(t).toISOString().slice(11, 16)),
    series: [
      { name: 'Allowed', className: 'allow', values: minutes.map((t) => by.get(t)?.allow ?? 0) },
      { name: 'Denied', className: 'deny', values: minutes.map((t) => by.get(t)?.deny ?? 0) },
    ],
    summary: `${stats.total.allow} allowed, ${stats.total.deny} denied, ${stats.total.error} failed in the last hour`,
  });
}
