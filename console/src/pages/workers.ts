import { api, ApiError } from '../api.js';
import { field, h, notice, replace, table, when } from '../dom.js';
import { confirmDialog } from './dialog.js';
import type { Page } from './page.js';

interface Worker {
  nodeId: string;
  sessionId: string;
  capabilities: { labels?: string[]; region?: string; supported_providers?: string[]; max_concurrency?: number };
  health: unknown;
  load: unknown;
  registeredAt: string;
  lastSeenAt: string;
  /** Set by gateways that quarantine workers (a flag, or the quarantine record with its reason). */
  quarantined?: unknown;
  quarantine?: unknown;
}

const isQuarantined = (w: Worker) => Boolean(w.quarantined ?? w.quarantine);

/** Workers: sessions, capability reports, load, last seen; quarantine and release (admin). */
export const workersPage: Page = async (root, ctx) => {
  const { workers } = await api<{ workers: Worker[] }>('GET', '/v1/workers');
  const message = h('div', { class: 'status-line' });
  const reload = () => workersPage(root, ctx);
  const rows = workers.map((w) => [
    w.nodeId,
    w.sessionId.slice(0, 8),
    (w.capabilities.labels ?? []).join(', ') || '—',
    w.capabilities.region ?? '—',
    (w.capabilities.supported_providers ?? []).join(', ') || '—',
    w.load === null ? '—' : JSON.stringify(w.load),
    when(w.registeredAt),
    when(w.lastSeenAt),
    isQuarantined(w) ? 'quarantined' : 'active',
    quarantineButton(w, message, reload),
  ]);
  replace(
    root,
    message,
    table(
      `${workers.length} workers`,
      ['Node', 'Session', 'Labels', 'Region', 'Providers', 'Load', 'Registered', 'Last seen', 'State', 'Action'],
      rows,
      'no worker has registered.',
    ),
  );
};

function quarantineButton(w: Worker, message: HTMLElement, reload: () => Promise<void>): HTMLElement {
  const release = isQuarantined(w);
  const label = release ? `Release ${w.nodeId}` : `Quarantine ${w.nodeId}`;
  const button = h('button', { type: 'button', class: release ? 'secondary' : 'danger' }, release ? 'Release' : 'Quarantine');
  button.setAttribute('aria-label', label);
  button.addEventListener('click', () => {
    const reason = h('input', { id: 'quarantine-reason', name: 'reason', type: 'text', value: 'quarantined from the console' });
    const question = release ? `Release ${w.nodeId}? It gets jobs again.` : `Quarantine ${w.nodeId}? It gets no new jobs until released.`;
    void confirmDialog(question, release ? 'Release' : 'Quarantine', release ? undefined : field('Reason', reason)).then(async (yes) => {
      if (!yes) return button.focus();
      const path = `/v1/workers/${encodeURIComponent(w.nodeId)}/${release ? 'release' : 'quarantine'}`;
      try {
        await api('POST', path, release ? {} : { reason: reason.value });
        await reload();
      } catch (err) {
        const text =
          err instanceof ApiError && err.routeMissing
            ? 'Quarantine is not available on this gateway.'
            : `Refused: ${(err as Error).message}`;
        replace(message, notice('error', text));
      }
    });
  });
  return button;
}
