import { api } from '../api.js';
import { h, link, notice, replace, table, when } from '../dom.js';
import { filterForm } from './filters.js';
import type { Page } from './page.js';

interface Job {
  id: string;
  state: string;
  task_id: string;
  user_id: string;
  priority: number;
  attempts: number;
  lease: { node_id: string } | null;
  created_at: string | null;
}
interface JobDetail extends Job {
  requirements: unknown;
  error: unknown;
  history: { attempt: number; node_id: string; outcome: string | null; leased_at: string | null; decision_id: string }[];
  decisions: {
    node_id: string;
    allow: boolean;
    reasons: string[];
    score: number;
    decision_id: string;
    revision: string | null;
    decided_at: string | null;
  }[];
}

const STATES = ['', 'queued', 'leased', 'succeeded', 'failed', 'dead_lettered', 'cancelled'];

/** Jobs by state; one job with its attempts and the last dispatch decision per node (why it waits). */
export const jobsPage: Page = async (root, ctx) => {
  if (ctx.params[0]) return jobDetail(root, ctx.params[0]);
  const state = ctx.query.get('state') ?? '';
  const form = filterForm('jobs', 'Filter jobs', [{ name: 'state', label: 'State', options: STATES, value: state }]);
  const { jobs } = await api<{ jobs: Job[] }>('GET', `/v1/jobs?limit=200${state ? `&state=${encodeURIComponent(state)}` : ''}`);
  const rows = jobs.map((j) => [
    link(`/jobs/${j.id}`, j.id),
    j.state,
    j.task_id,
    j.user_id,
    String(j.priority),
    String(j.attempts),
    j.lease?.node_id ?? '—',
    when(j.created_at),
  ]);
  replace(
    root,
    form,
    table(
      `${jobs.length} jobs, newest first`,
      ['Job', 'State', 'Task', 'User', 'Priority', 'Attempts', 'Leased by', 'Submitted'],
      rows,
      'no job in this state.',
    ),
  );
};

async function jobDetail(root: HTMLElement, id: string): Promise<void> {
  const job = await api<JobDetail>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  const waiting = job.state === 'queued';
  const denied = job.decisions.filter((d) => !d.allow);
  replace(
    root,
    h('p', {}, link('/jobs', '← All jobs')),
    h('p', {}, `Job ${job.id}: ${job.state}, task ${job.task_id}, user ${job.user_id}, ${job.attempts} attempt(s).`),
    waiting
      ? h(
          'section',
          { 'aria-labelledby': 'why-h' },
          h('h2', { id: 'why-h' }, 'Why is this job waiting?'),
          job.decisions.length === 0
            ? notice('info', 'No worker has been offered this job yet: no worker polled since it was queued.')
            : h(
                'ul',
                { class: 'why' },
                ...denied.map((d) =>
                  h(
                    'li',
                    {},
                    `${d.node_id}: denied — ${d.reasons.join(', ') || 'no reason given'} `,
                    link(`/decisions/${d.decision_id}`, 'decision'),
                  ),
                ),
              ),
          denied.length === 0 && job.decisions.length > 0 ? notice('info', 'A worker may take it: the last answer allowed it.') : null,
        )
      : null,
    h('h2', {}, 'Requirements'),
    h('pre', { tabindex: 0, 'aria-label': 'Job requirements' }, JSON.stringify(job.requirements, null, 2)),
    table(
      'Last dispatch decision per node',
      ['Node', 'Outcome', 'Reasons', 'Score', 'Revision', 'Decided', 'Decision'],
      job.decisions.map((d) => [
        d.node_id,
        d.allow ? 'allow' : 'deny',
        d.reasons.join(', ') || '—',
        String(d.score),
        d.revision ?? '—',
        when(d.decided_at),
        link(`/decisions/${d.decision_id}`, 'Open'),
      ]),
      'none yet.',
    ),
    table(
      'Attempts',
      ['Attempt', 'Node', 'Leased', 'Outcome', 'Decision'],
      job.history.map((a) => [
        String(a.attempt),
        a.node_id,
        when(a.leased_at),
        a.outcome ?? 'running',
        link(`/decisions/${a.decision_id}`, 'Open'),
      ]),
      'none yet.',
    ),
  );
}
