import { api, ApiError, type Session, useSession } from './api.js';
import { h, notice, replace } from './dom.js';
import { auditPage } from './pages/audit.js';
import { decisionsPage } from './pages/decisions.js';
import { jobsPage } from './pages/jobs.js';
import { overviewPage } from './pages/overview.js';
import { policyPage } from './pages/policy.js';
import type { Page } from './pages/page.js';
import { spendPage } from './pages/spend.js';
import { workersPage } from './pages/workers.js';

const PAGES: { path: string; title: string; page: Page }[] = [
  { path: 'overview', title: 'Overview', page: overviewPage },
  { path: 'decisions', title: 'Decisions', page: decisionsPage },
  { path: 'jobs', title: 'Jobs', page: jobsPage },
  { path: 'workers', title: 'Workers', page: workersPage },
  { path: 'spend', title: 'Spend', page: spendPage },
  { path: 'policy', title: 'Policy', page: policyPage },
  { path: 'audit', title: 'Audit', page: auditPage },
];

const root = document.getElementById('app')!;

async function start(): Promise<void> {
  try {
    const session = await api<Session>('GET', '/console/session');
    useSession(session);
    shell(session);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) signIn();
    else replace(root, notice('error', `The console cannot reach the gateway: ${(err as Error).message}`));
  }
}

/** The sign-in form: the token is posted once and exchanged for a session cookie; it is never stored. */
function signIn(message?: string): void {
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const status = h('div', { class: 'status-line' }, message ? notice('error', message) : null);
  const form = h(
    'form',
    { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to cynode-gateway'),
    h('p', {}, 'Paste the admin token, or the read-only token to look without changing anything.'),
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Token'), input),
    h('button', { type: 'submit' }, 'Sign in'),
    status,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value;
    input.value = '';
    api<Session>('POST', '/console/session', { token })
      .then((session) => {
        useSession(session);
        shell(session);
      })
      .catch((err: Error) => replace(status, notice('error', err.message)));
  });
  replace(root, h('main', { id: 'main', tabindex: -1 }, form));
  input.focus();
}

function shell(session: Session): void {
  const main = h('main', { id: 'main', tabindex: -1 });
  const nav = h(
    'nav',
    { 'aria-label': 'Sections' },
    h('ul', {}, ...PAGES.map((p) => h('li', {}, h('a', { href: `#/${p.path}`, 'data-page': p.path }, p.title)))),
  );
  const signOut = h('button', { type: 'button', class: 'secondary' }, 'Sign out');
  signOut.addEventListener('click', () => {
    void api('DELETE', '/console/session').finally(() => {
      useSession(undefined);
      window.location.hash = '';
      signIn();
    });
  });
  const who = session.principal.kind === 'admin' ? 'admin' : 'read-only';
  const header = h(
    'header',
    {},
    h('span', { class: 'brand' }, 'cynode-gateway'),
    nav,
    h('span', { class: 'who' }, `Signed in: ${who}`),
    signOut,
  );
  replace(root, header, main);
  window.onhashchange = () => void route(main, nav, session, true);
  // The first page leaves focus at the start of the document (the skip link comes first).
  void route(main, nav, session, false);
}

let routing = 0;

async function route(main: HTMLElement, nav: HTMLElement, session: Session, moveFocus: boolean): Promise<void> {
  const [path = '', search = ''] = window.location.hash.replace(/^#\/?/, '').split('?');
  const [name = 'overview', ...rest] = path.split('/');
  const entry = PAGES.find((p) => p.path === name) ?? PAGES[0]!;
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === entry.path) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${entry.title} · cynode-gateway console`;
  const generation = ++routing;
  const body = h('div', { class: 'page' }, h('p', { class: 'loading' }, 'Loading…'));
  replace(main, h('h1', {}, entry.title), body);
  try {
    await entry.page(body, { session, params: rest.map(decodeURIComponent), query: new URLSearchParams(search) });
  } catch (err) {
    if (generation !== routing) return;
    if (err instanceof ApiError && err.status === 401) return signIn('The session has ended; sign in again.');
    replace(body, notice('error', (err as Error).message));
  }
  if (generation === routing && moveFocus) main.focus();
}

void start();
