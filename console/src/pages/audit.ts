import { api, ApiError } from '../api.js';
import { h, notice, replace, table, when } from '../dom.js';
import { rowsTable } from './decisions.js';
import { filterForm } from './filters.js';
import type { Page } from './page.js';

interface Chains {
  verified_at: string;
  chains: Record<string, { rows: number; intact: boolean; break: { seq: string; reason: string } | null }>;
}

/** Audit: every hash chain verified now, and the api.call audit filtered by task or request. */
export const auditPage: Page = async (root, ctx) => {
  const q = ctx.query;
  const params = new URLSearchParams({ limit: '200' });
  for (const name of ['task_id', 'request_id']) if (q.get(name)) params.set(name, q.get(name)!);
  const tools = new URLSearchParams({ limit: '200' });
  for (const [from, to] of [
    ['tool_task', 'task_id'],
    ['tool', 'tool'],
    ['outcome', 'outcome'],
  ] as const)
    if (q.get(from)) tools.set(to, q.get(from)!);
  const [chains, { records }, toolAudit] = await Promise.all([
    api<Chains>('GET', '/v1/audit/chains'),
    api<{ records: Record<string, unknown>[] }>('GET', `/v1/audit?${params.toString()}`),
    api<{ records: Record<string, unknown>[] }>('GET', `/v1/tool-audit?${tools.toString()}`).catch((err: unknown) => {
      if (err instanceof ApiError && err.routeMissing) return undefined;
      throw err;
    }),
  ]);
  replace(
    root,
    table(
      `Chain verification (${when(chains.verified_at)})`,
      ['Chain', 'Rows', 'Status'],
      Object.entries(chains.chains).map(([name, c]) => [
        name,
        String(c.rows),
        h(
          'span',
          { class: `badge ${c.intact ? 'allow' : 'deny'}` },
          c.intact ? 'intact' : `broken at row ${c.break?.seq}: ${c.break?.reason}`,
        ),
      ]),
    ),
    h('h2', {}, 'api.call audit'),
    filterForm('audit', 'Filter the api.call audit', [
      { name: 'task_id', label: 'Task id', value: q.get('task_id') },
      { name: 'request_id', label: 'Request id', value: q.get('request_id') },
    ]),
    rowsTable(`${records.length} api.call records`, records, [
      'seq',
      'at',
      'gate',
      'outcome',
      'subject_id',
      'task_id',
      'provider',
      'operation',
      'reasons',
      'cost_usd',
      'decision_id',
    ]),
    h('h2', {}, 'Tool audit'),
    filterForm('audit', 'Filter the tool audit', [
      { name: 'tool_task', label: 'Task id (tools)', value: q.get('tool_task') },
      { name: 'tool', label: 'Tool', value: q.get('tool') },
      { name: 'outcome', label: 'Outcome', options: ['', 'ok', 'denied', 'error'], value: q.get('outcome') },
    ]),
    toolAudit
      ? rowsTable(`${toolAudit.records.length} tool calls, newest first`, toolAudit.records, [
          'seq',
          'at',
          'tool',
          'outcome',
          'subject_id',
          'agent_type',
          'task_id',
          'reasons',
          'decision_id',
        ])
      : notice('info', 'The tool audit is not available on this gateway.'),
  );
};
