import test from 'ava';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { buildCustomBundle } from '../helpers/bundle.js';
import { call } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';
import { runAxe } from './axe.js';
import { type ConsoleRig, hasRoute, READER_TOKEN, SHOTS, startRig, waitForText, waitUntil } from './fixture.js';

// One gateway and one browser for the file: each test drives the console the way an operator
// would and checks the gateway's state through the API, not through the page.
let rig: ConsoleRig;
let admin: Page;
let worker: TestWorker;
let leasedJob: string;
let waitingJob: string;

const PAGES = ['overview', 'decisions', 'jobs', 'workers', 'spend', 'policy', 'audit'];

test.before(async () => {
  rig = await startRig();
  const { base } = rig;
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  worker = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'cloud-console-01', supported_models: ['m-console'] });
  admin = await rig.signedIn(rig.gw.adminToken);
});
test.after.always(() => rig?.stop());

const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const submit = async () => {
  const res = await submitJob(rig.base, { requirements: { models: ['m-console'], providers: ['openai'] } });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return String(res.body.id);
};
const leased = async () => (await poll(rig.base, worker, { max_jobs: 4 })).body.jobs.map((j) => j.job_id);
const killSwitch = async () => (await call<{ value: boolean }>(rig.base, '/v1/settings/cloud_routing.enabled')).body.value;
const setKillSwitch = (value: boolean) => call(rig.base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value } });
/** Opens a console page and waits until it has rendered (its nav link current, nothing loading). */
const open = async (page: Page, name: string) => {
  await page.goto(`${rig.base}/console#/${name}`);
  await waitUntil(
    page,
    `document.querySelector('nav a[aria-current=page]')?.dataset.page === '${name}' && !document.querySelector('main .loading')`,
  );
};

test.serial('signing in keeps the token out of the page: an HttpOnly session cookie, nothing in storage or the address', async (t) => {
  const state = await admin.evaluate<{ cookie: string; storage: number; href: string; who: string }>(
    `({ cookie: document.cookie, storage: localStorage.length + sessionStorage.length, href: location.href, who: document.querySelector('.who').textContent })`,
  );
  t.is(state.cookie, '', 'the session cookie is HttpOnly');
  t.is(state.storage, 0);
  t.false(state.href.includes(rig.gw.adminToken));
  t.is(state.who, 'Signed in: admin');
  await waitForText(admin, '[data-testid=bundle]', 'runs revision test-suite');
  await waitForText(admin, 'table caption', 'Per replica');
  t.regex((await admin.locator('section[aria-labelledby=bundle-h] tbody').textContent()) ?? '', /:\d+test-suite/);
  await shot(admin, 'overview');
});

test.serial("flipping the kill switch in the console stops the worker's next poll", async (t) => {
  leasedJob = await submit();
  t.deepEqual(await leased(), [leasedJob], 'cloud routing is on: the job is leased');
  await admin.click('#kill-switch');
  await admin.locator('dialog[open]').waitFor();
  await shot(admin, 'kill-switch-confirm');
  await admin.click('dialog button[value=yes]');
  await waitForText(admin, '[data-testid=kill-state]', 'Cloud routing is OFF');
  await waitForText(admin, '[data-testid=kill-state]', 'Last set by admin');
  const depth = await admin.locator('section[aria-labelledby=queue-h] tbody tr').allTextContents();
  t.true(depth.includes('leased1'), `queue depth from the gauge: ${depth.join(' ')}`);
  t.false(await killSwitch());
  waitingJob = await submit();
  t.deepEqual(await leased(), [], 'the next poll gets nothing');
  await shot(admin, 'kill-switch-off');
});

test.serial('a waiting job shows why: the last decision per node with its reasons', async (t) => {
  await admin.goto(`${rig.base}/console#/jobs/${waitingJob}`);
  await waitForText(admin, 'main h2', 'Why is this job waiting?');
  await waitForText(admin, 'ul.why li', 'cloud-console-01: denied — cloud_routing_disabled');
  t.pass();
  await shot(admin, 'job-waiting');
});

test.serial('a denied decision is found by its reason and opened: masked input, result, revision, eval time, audit rows', async (t) => {
  await admin.goto(`${rig.base}/console#/decisions`);
  await admin.fill('#f-decisions-reason', 'cloud_routing_disabled');
  await admin.selectOption('#f-decisions-allow', 'false');
  await admin.click('form.filters button[type=submit]');
  await waitUntil(admin, `location.hash.includes('reason=cloud_routing_disabled')`);
  await waitForText(admin, 'table caption', 'decisions, newest first');
  const reasons = await admin.locator('tbody tr td:nth-child(4)').allTextContents();
  t.true(reasons.length > 0);
  t.true(reasons.every((r) => r.includes('cloud_routing_disabled')));
  await shot(admin, 'decisions-filtered');
  await admin.locator('tbody tr a[href^="#/decisions/"]').first().click();
  await waitForText(admin, 'dl.facts', 'Bundle revision');
  const facts = (await admin.locator('dl.facts').textContent()) ?? '';
  t.regex(facts, /cynode\/dispatch\/decision/);
  t.regex(facts, /cloud_routing_disabled/);
  t.regex(facts, /test-suite/);
  t.regex(facts, /Evaluation time\d+\.\d{3} ms/);
  await waitForText(admin, 'table caption', 'Dispatch answers (why a job waits)');
  await waitForText(admin, 'table td', waitingJob);
  await shot(admin, 'decision-detail');
});

test.serial('a replay of a stricter candidate bundle lists the flips', async (t) => {
  const candidate = await buildCustomBundle(
    {
      'cynode/dispatch/strict.rego':
        'package cynode.dispatch\n\ndecision := {"allow": false, "reasons": ["candidate_denies_all"], "score": 0}\n',
    },
    { revision: 'stricter' },
  );
  await admin.goto(`${rig.base}/console#/policy`);
  await waitForText(admin, 'table caption', 'Activations on every replica');
  await waitForText(admin, 'tbody td', 'test-suite');
  await admin.setInputFiles('#replay-bundle', [candidate]);
  await admin.click('form.filters button[type=submit]');
  if (!hasRoute('post', '/v1/policy/replay')) {
    await waitForText(admin, '.replay-results', 'Replay is not available on this gateway.');
    await shot(admin, 'policy-replay');
    t.pass('this gateway has no replay route: the page says so');
    return;
  }
  await waitForText(admin, '.replay-results', 'Candidate stricter');
  const flips = await admin.evaluate<string[]>(
    `[...document.querySelectorAll('.replay-results table')]
      .filter((table) => table.caption.textContent.startsWith('Flips'))
      .flatMap((table) => [...table.querySelectorAll('tbody tr')].map((row) => row.textContent))`,
  );
  t.true(
    flips.some((f) => f.includes('cynode/dispatch/decision') && f.includes('candidate_denies_all')),
    'the leased job would now be denied',
  );
  await shot(admin, 'policy-replay');
});

test.serial('a worker is quarantined from the Workers page (or the page says quarantine is not available)', async (t) => {
  await admin.goto(`${rig.base}/console#/workers`);
  await waitForText(admin, 'tbody td', 'cloud-console-01');
  await admin.click('button[aria-label="Quarantine cloud-console-01"]');
  await admin.locator('dialog[open] #quarantine-reason').waitFor();
  await admin.click('dialog button[value=yes]');
  if (!hasRoute('post', '/v1/workers/{node_id}/quarantine')) {
    await waitForText(admin, '.status-line', 'Quarantine is not available on this gateway.');
  } else {
    await admin.locator('dialog').waitFor({ state: 'detached' });
    t.is(await admin.locator('.status-line [role=alert]').count(), 0);
    await setKillSwitch(true);
    try {
      // A quarantined node's token is refused outright (node_quarantined), so its poll leases nothing.
      const refused = await poll(rig.base, worker, { max_jobs: 4 });
      t.is(refused.status, 403, 'a quarantined worker gets no job even with cloud routing on');
      t.is((refused.body as { error?: { code?: string } }).error?.code, 'node_quarantined');
      t.false('jobs' in refused.body, 'and no jobs in the answer');
    } finally {
      await setKillSwitch(false);
    }
  }
  await shot(admin, 'workers');
});

test.serial('a read-only session sees everything but is refused the kill switch', async (t) => {
  const reader = await rig.signedIn(READER_TOKEN);
  try {
    t.is(await reader.locator('.who').textContent(), 'Signed in: read-only');
    await reader.click('#kill-switch');
    await reader.click('dialog button[value=yes]');
    await waitForText(reader, '.status-line [role=alert]', 'Refused');
    t.false(await killSwitch(), 'the switch stays where the admin left it');
    const direct = await reader.evaluate<number>(
      `(async () => { const s = await (await fetch('/console/session')).json();
        return (await fetch('/v1/settings/cloud_routing.enabled', { method: 'PUT', headers: { 'content-type': 'application/json', 'x-cynode-csrf': s.csrf }, body: '{"value":true}' })).status; })()`,
    );
    t.is(direct, 403, 'the API refuses the reader session even with its CSRF token');
    await shot(reader, 'read-only-refused');
  } finally {
    await reader.evaluate(`fetch('/console/session', { method: 'DELETE' })`).catch(() => undefined);
    await reader.context().close();
  }
});

test.serial('every page loads with one h1, captioned tables with column headers, a labelled nav and no error', async (t) => {
  for (const page of PAGES) {
    await open(admin, page);
    t.is(await admin.locator('h1').count(), 1, `${page}: exactly one h1`);
    t.is(await admin.locator('nav[aria-label]').count(), 1, `${page}: a labelled nav`);
    t.is(await admin.locator('main').count(), 1, `${page}: a main landmark`);
    t.is(await admin.locator('table:not(:has(> caption))').count(), 0, `${page}: every table has a caption`);
    t.is(await admin.locator('table:not(:has(th[scope=col]))').count(), 0, `${page}: every table has column headers`);
    t.is(await admin.locator('main [role=alert]').count(), 0, `${page} shows no error`);
  }
  await waitForText(admin, 'table caption', 'Chain verification');
  await waitForText(admin, 'tbody td', 'intact');
  await shot(admin, 'audit');
  await open(admin, 'spend');
  await waitForText(admin, 'figcaption', 'Settled spend per hour');
  await shot(admin, 'spend');
});

test.serial('axe-core finds no serious or critical WCAG 2 A/AA violation on the sign-in form, any page or the confirmation', async (t) => {
  // The injected axe script is not from the gateway, so this context alone bypasses the CSP.
  const signIn = await rig.signInPage({ bypassCSP: true });
  const auditor = await rig.signedIn(rig.gw.adminToken, { bypassCSP: true });
  try {
    const audit = async (page: Page, what: string) => {
      const found = await runAxe(page);
      t.log(
        `${what}: ${found.passed} rules pass; ${found.failing.length + found.other.length} violations${[...found.failing, ...found.other].map((v) => `\n  ${v}`).join('')}`,
      );
      t.deepEqual(found.failing, [], `${what}:\n${found.failing.join('\n')}`);
    };
    await audit(signIn, 'sign-in');
    for (const page of PAGES) {
      await open(auditor, page);
      await audit(auditor, page);
    }
    await open(auditor, 'overview');
    await auditor.click('#kill-switch');
    await auditor.locator('dialog[open]').waitFor();
    await audit(auditor, 'kill switch confirmation');
    await auditor.keyboard.press('Escape');
  } finally {
    await signIn.context().close();
    await auditor.context().close();
  }
});

test.serial('the sign-in form is usable from the keyboard: Tab reaches the token field, Enter signs in', async (t) => {
  const page = await rig.signInPage();
  try {
    t.is(await page.evaluate<string>(`document.activeElement.id`), 'token', 'the form opens on its field');
    await page.keyboard.press('Shift+Tab');
    t.is(await page.evaluate<string>(`document.activeElement.textContent.trim()`), 'Skip to content');
    await page.keyboard.press('Tab');
    t.is(await page.evaluate<string>(`document.activeElement.id`), 'token');
    await page.keyboard.type(rig.gw.adminToken);
    await page.keyboard.press('Enter');
    await waitForText(page, '.who', 'Signed in: admin');
  } finally {
    await page.context().close();
  }
});

test.serial(
  'the console is usable from the keyboard: skip link, sections in order, Tab reaches the kill switch, Enter follows, Escape cancels a confirmation',
  async (t) => {
    await admin.goto(`${rig.base}/console?fresh=1#/overview`); // a new document: focus starts at the top
    await admin.locator('#kill-switch').waitFor();
    const active = () => admin.evaluate<string>(`document.activeElement.textContent.trim()`);
    const focused: string[] = [];
    for (let i = 0; i < 9; i++) {
      await admin.keyboard.press('Tab');
      focused.push(await active());
    }
    t.deepEqual(focused, ['Skip to content', 'Overview', 'Decisions', 'Jobs', 'Workers', 'Spend', 'Policy', 'Audit', 'Sign out']);
    await admin.keyboard.press('Shift+Tab'); // back to Audit
    await admin.keyboard.press('Shift+Tab'); // Policy
    await admin.keyboard.press('Enter');
    await waitUntil(admin, `location.hash === '#/policy' && document.activeElement.id === 'main'`);
    t.is(await admin.locator('main h1').textContent(), 'Policy');

    await admin.goto(`${rig.base}/console?fresh=2#/overview`);
    await admin.locator('#kill-switch').waitFor();
    let presses = 0;
    while (presses < 40 && (await admin.evaluate<string>(`document.activeElement.id`)) !== 'kill-switch') {
      await admin.keyboard.press('Tab');
      presses++;
    }
    t.is(await admin.evaluate<string>(`document.activeElement.id`), 'kill-switch', `Tab reaches the kill switch (${presses} presses)`);
    await admin.keyboard.press('Enter');
    await admin.locator('dialog[open]').waitFor();
    t.is(await active(), 'Cancel', 'the dialog opens on its safe choice');
    await admin.keyboard.press('Escape');
    await waitUntil(admin, `document.querySelector('dialog') === null && document.activeElement.id === 'kill-switch'`);
    t.false(await killSwitch(), 'Escape changed nothing');
  },
);

test.serial('the console loads scripts and styles only from the gateway itself, and its CSP refuses any other script', async (t) => {
  const origin = new URL(rig.base).origin;
  const seen = rig.requests(admin).filter((r) => !r.url.startsWith('data:') && r.url !== 'about:blank');
  t.true(seen.some((r) => r.type === 'script' && r.url === `${origin}/console/assets/app.js`));
  t.true(seen.some((r) => r.type === 'stylesheet' && r.url === `${origin}/console/assets/app.css`));
  t.deepEqual(
    seen.filter((r) => !r.url.startsWith(`${origin}/`)),
    [],
    'nothing from anywhere else',
  );
  const refusals = () => rig.errors(admin).filter((e) => e.includes('Content Security Policy'));
  t.deepEqual(refusals(), [], 'no CSP refusal while every page ran, charts included');
  t.deepEqual(
    await admin.evaluate<string[]>(`[...document.scripts].map((s) => s.src)`),
    [`${origin}/console/assets/app.js`],
    'the only script in the page is the gateway’s',
  );
  const ran = await admin.evaluate<boolean>(
    `(() => { const s = document.createElement('script'); s.textContent = 'window.__inlineRan = true'; document.head.append(s); s.remove(); return window.__inlineRan === true; })()`,
  );
  t.false(ran, 'the page, without any bypass, refuses an inline script');
  for (let i = 0; i < 40 && refusals().length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(refusals().length, 1, 'the browser reports that refusal');
  const res = await fetch(`${rig.base}/console`);
  t.regex(res.headers.get('content-security-policy') ?? '', /default-src 'self'.*frame-ancestors 'none'/);
  t.false((await res.text()).includes('<script>'), 'no inline script');
});
