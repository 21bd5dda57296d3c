import { api, query } from '../api.js';
import { h, link, replace, table, when } from '../dom.js';
import { filterForm } from './filters.js';
import type { Page } from './page.js';

interface Summary {
  decision_id: string;
  path: string;
  allow: boolean | null;
  reasons: string[];
  subject: string | null;
  task_id: string | null;
  masked: boolean;
  error: string | null;
  timestamp: string;
}

const ENTRYPOINTS = ['cynode/register/decision', 'cynode/dispatch/decision', 'cynode/api_call/decision', 'cynode/mcp_tool_invoke/decision'];

/** Decisions: the log filtered by entrypoint, outcome, reason, subject, task and time; one opened in full. */
export const decisionsPage: Page = async (root, ctx) => {
  if (ctx.params[0]) return decisionDetail(root, ctx.params[0]);
  const q = ctx.query;
  const form = filterForm('decisions', 'Filter decisions', [
    { name: 'entrypoint', label: 'Entrypoint', options: ['', ...ENTRYPOINTS], value: q.get('entrypoint') },
    { name: 'allow', label: 'Outcome', options: ['', 'true', 'false'], optionLabels: ['any', 'allowed', 'denied'], value: q.get('allow') },
    { name: 'reason', label: 'Reason', value: q.get('reason') },
    { name: 'subject', label: 'Subject', value: q.get('subject') },
    { name: 'task', label: 'Task id', value: q.get('task') },
    {
      name: 'since',
      label: 'Since',
      options: ['1h', '24h', '7d', 'all'],
      optionLabels: ['last hour', 'last day', 'last week', 'all time'],
      value: q.get('since') ?? '24h',
    },
  ]);
  const params = Object.fromEntries(['entrypoint', 'allow', 'reason', 'subject', 'task'].map((k) => [k, q.get(k) ?? undefined]));
  const since = q.get('since') ?? '24h';
  const { decisions } = await api<{ decisions: Summary[] }>(
    'GET',
    `/v1/decisions${query({ ...params, since: since === 'all' ? undefined : since, limit: 200 })}`,
  );
  const rows = decisions.map((d) => [
    when(d.timestamp),
    d.path,
    outcome(d.allow, d.error),
    d.reasons.join(', ') || '—',
    d.subject ?? '—',
    d.task_id ?? '—',
    d.masked ? 'masked' : '',
    link(`/decisions/${d.decision_id}`, `Open ${d.decision_id.slice(0, 8)}`),
  ]);
  replace(
    root,
    form,
    table(
      `${decisions.length} decisions, newest first`,
      ['Time', 'Entrypoint', 'Outcome', 'Reasons', 'Subject', 'Task', 'Input', 'Decision'],
      rows,
      'no decision matches.',
    ),
  );
};

function outcome(allow: boolean | null, error: string | null): HTMLElement {
  if (error) return h('span', { class: 'badge error' }, `error: ${error}`);
  return h('span', { class: `badge ${allow ? 'allow' : 'deny'}` }, allow ? 'allow' : 'deny');
}

interface Event {
  decision_id: string;
  path: string;
  input: unknown;
  result?: { allow?: boolean; reasons?: string[] };
  error?: { code: string; message: string };
  erased: string[];
  bundles: { cynode: { revision: string | null } };
  bundle_digest: string | null;
  requested_by: string | null;
  timestamp: string;
  metrics: { timer_rego_query_eval_ns: number };
}
type Rows = Record<string, unknown>[];

async function decisionDetail(root: HTMLElement, id: string): Promise<void> {
  const [event, trail] = await Promise.all([
    api<Event>('GET', `/v1/decisions/${encodeURIComponent(id)}`),
    api<{ api_audit: Rows; tool_audit: Rows; job_attempts: Rows; job_decisions: Rows }>(
      'GET',
      `/v1/decisions/${encodeURIComponent(id)}/audit`,
    ),
  ]);
  const facts: [string, string | HTMLElement][] = [
    ['Decision', event.decision_id],
    ['Entrypoint', event.path],
    ['Outcome', outcome(event.result?.allow ?? null, event.error?.code ?? null)],
    ['Reasons', event.result?.reasons?.join(', ') || '—'],
    ['Bundle revision', event.bundles.cynode.revision ?? '—'],
    ['Evaluation time', `${(event.metrics.timer_rego_query_eval_ns / 1e6).toFixed(3)} ms`],
    ['Requested by', event.requested_by ?? '—'],
    ['Time', when(event.timestamp)],
    ['Masked fields', event.erased.length ? event.erased.join(', ') : 'none'],
  ];
  replace(
    root,
    h('p', {}, link('/decisions', '← All decisions')),
    h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('h2', {}, 'Input (as recorded, masked)'),
    h('pre', { tabindex: 0, 'aria-label': 'Decision input' }, JSON.stringify(event.input, null, 2)),
    h('h2', {}, 'Result'),
    h('pre', { tabindex: 0, 'aria-label': 'Decision result' }, JSON.stringify(event.result ?? event.error, null, 2)),
    h('h2', {}, 'Audit rows it led to'),
    rowsTable('api.call audit', trail.api_audit, ['seq', 'gate', 'at', 'outcome', 'task_id', 'provider', 'model_served', 'cost_usd']),
    rowsTable('Tool audit', trail.tool_audit, ['seq', 'at', 'tool', 'outcome', 'task_id', 'subject_id']),
    rowsTable('Job leases', trail.job_attempts, ['job_id', 'attempt', 'node_id', 'leased_at', 'outcome']),
    rowsTable('Dispatch answers (why a job waits)', trail.job_decisions, ['job_id', 'node_id', 'allow', 'reasons', 'decided_at']),
  );
}

/** A table of audit rows, showing the named columns. */
export function rowsTable(caption: string, rows: Rows, columns: string[]): HTMLElement {
  const cell = (column: string, v: unknown) => {
    if (typeof v === 'string' && column === 'job_id') return link(`/jobs/${v}`, v);
    if (typeof v === 'string' && column === 'decision_id') return link(`/decisions/${v}`, v.slice(0, 8));
    return v === null || v === undefined ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  };
  return table(
    caption,
    columns,
    rows.map((r) => columns.map((c) => cell(c, r[c]))),
    'none.',
  );
}
