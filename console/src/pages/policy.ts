import { api, ApiError, query } from '../api.js';
import { field, h, link, notice, replace, table, when } from '../dom.js';
import type { Page } from './page.js';

interface Status {
  bundles: {
    cynode: {
      active: { revision: string; digest: string; source: string; activatedAt: string; entrypoints: string[] } | null;
      lastSuccessAt: string | null;
      lastError: { message: string; at: string } | null;
    };
  };
}
interface Activation {
  replica: string;
  revision: string;
  digest: string;
  source: string;
  activated_at: string;
}
interface Verdict {
  allow: boolean;
  reasons: string[];
}
interface EntrypointReplay {
  evaluated: number;
  unchanged: number;
  allow_to_deny: number;
  deny_to_allow: number;
  reasons_changed: number;
  masked: number;
  errors: number;
  samples: { decision_id: string; before: Verdict; after: Verdict }[];
}
interface Replay {
  candidate: { revision: string; digest: string };
  since: string;
  total: number;
  entrypoints: Record<string, EntrypointReplay>;
}

/** Policy: the active bundle, and replay of recorded decisions against an uploaded candidate bundle. */
export const policyPage: Page = async (root) => {
  const [status, history] = await Promise.all([
    api<Status>('GET', '/v1/status'),
    api<{ activations: Activation[] }>('GET', '/v1/policy/history?limit=50').then(
      (r) => r.activations,
      () => undefined,
    ),
  ]);
  const b = status.bundles.cynode;
  const results = h('div', { class: 'replay-results', 'aria-live': 'polite' });
  replace(
    root,
    h('h2', {}, 'Active bundle'),
    b.active
      ? table(
          'Bundle this replica runs',
          ['Revision', 'Digest', 'Source', 'Activated', 'Entrypoints'],
          [[b.active.revision, b.active.digest.slice(0, 16), b.active.source, when(b.active.activatedAt), b.active.entrypoints.join(', ')]],
        )
      : notice('error', 'No bundle is active.'),
    b.lastError ? notice('error', `Last load error (${when(b.lastError.at)}): ${b.lastError.message}`) : null,
    h('h2', {}, 'Bundle history'),
    history
      ? table(
          'Activations on every replica, newest first',
          ['Activated', 'Replica', 'Revision', 'Digest', 'Source'],
          history.map((a) => [when(a.activated_at), a.replica, a.revision, a.digest.slice(0, 16), a.source]),
          'none recorded.',
        )
      : notice('info', 'Bundle history is not available on this gateway.'),
    h('h2', {}, 'Replay a candidate bundle'),
    h('p', {}, 'Re-evaluates recorded decisions against a candidate bundle (verified like any bundle) and lists what would change.'),
    replayForm(b.active?.entrypoints ?? [], results),
    results,
  );
};

function replayForm(entrypoints: string[], results: HTMLElement): HTMLFormElement {
  const file = h('input', { id: 'replay-bundle', name: 'bundle', type: 'file', accept: '.tar.gz,.tgz,application/gzip', required: true });
  const entrypoint = h(
    'select',
    { id: 'replay-entrypoint', name: 'entrypoint' },
    h('option', { value: '' }, 'every entrypoint'),
    ...entrypoints.map((e) => h('option', { value: e }, e)),
  );
  const since = h(
    'select',
    { id: 'replay-since', name: 'since' },
    ...['1h', '24h', '7d'].map((s) => h('option', { value: s, selected: s === '24h' }, s)),
  );
  const form = h(
    'form',
    { class: 'filters', 'aria-label': 'Replay a candidate bundle' },
    field('Candidate bundle (.tar.gz)', file),
    field('Entrypoint', entrypoint),
    field('Decisions since', since),
    h('button', { type: 'submit' }, 'Run replay'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const bundle = file.files?.[0];
    if (!bundle) return replace(results, notice('error', 'Choose a bundle file first.'));
    replace(results, h('p', { class: 'loading', role: 'status' }, 'Replaying…'));
    const path = `/v1/policy/replay${query({ since: since.value, entrypoint: entrypoint.value })}`;
    api<Replay>('POST', path, bundle, 'application/gzip')
      .then((replay) => replace(results, ...replayResults(replay)))
      .catch((err: Error) => {
        const text =
          err instanceof ApiError && err.routeMissing ? 'Replay is not available on this gateway.' : `Replay refused: ${err.message}`;
        replace(results, notice('error', text));
      });
  });
  return form;
}

function replayResults(replay: Replay): HTMLElement[] {
  const entries = Object.entries(replay.entrypoints);
  const flips = entries.flatMap(([path, e]) => e.samples.filter((s) => s.before.allow !== s.after.allow).map((s) => ({ path, ...s })));
  const changed = entries.flatMap(([path, e]) => e.samples.filter((s) => s.before.allow === s.after.allow).map((s) => ({ path, ...s })));
  const verdict = (v: Verdict) => `${v.allow ? 'allow' : 'deny'}${v.reasons.length ? ` (${v.reasons.join(', ')})` : ''}`;
  const sampleRow = (s: { path: string; decision_id: string; before: Verdict; after: Verdict }) => [
    link(`/decisions/${s.decision_id}`, s.decision_id.slice(0, 8)),
    s.path,
    verdict(s.before),
    verdict(s.after),
  ];
  return [
    h('p', { role: 'status' }, `Candidate ${replay.candidate.revision}: ${replay.total} decisions since ${when(replay.since)} replayed.`),
    table(
      'Replay by entrypoint',
      ['Entrypoint', 'Evaluated', 'Unchanged', 'Allow → deny', 'Deny → allow', 'Reasons changed', 'Masked (not compared)', 'Errors'],
      entries.map(([path, e]) => [
        path,
        String(e.evaluated),
        String(e.unchanged),
        String(e.allow_to_deny),
        String(e.deny_to_allow),
        String(e.reasons_changed),
        String(e.masked),
        String(e.errors),
      ]),
    ),
    table('Flips (samples)', ['Decision', 'Entrypoint', 'Before', 'After'], flips.map(sampleRow), 'no decision flips.'),
    table('Reasons changed (samples)', ['Decision', 'Entrypoint', 'Before', 'After'], changed.map(sampleRow), 'none.'),
  ];
}
