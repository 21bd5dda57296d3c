import test from 'ava';
import { join } from 'node:path';
import { buildCustomBundle } from '../helpers/bundle.js';
import { call } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';
import type { Page } from './browser.js';
import { type ConsoleRig, hasRoute, READER_TOKEN, SHOTS, startRig } from './fixture.js';

// One gateway and one browser for the file: each test drives the console the way an operator
// would and checks the gateway's state through the API, not through the page.
let rig: ConsoleRig;
let admin: Page;
let worker: TestWorker;
let leasedJob: string;
let waitingJob: string;

test.before(async () => {
  rig = await startRig();
  const { base } = rig;
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  worker = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'cloud-console-01', supported_models: ['m-console'] });
  admin = await rig.signedIn(rig.gw.adminToken);
});
test.after.always(() => rig?.stop());

const shot = (page: Page, name: string) => page.screenshot(join(SHOTS, `${name}.png`));
const submit = async () => {
  const res = await submitJob(rig.base, { requirements: { models: ['m-console'], providers: ['openai'] } });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return String(res.body.id);
};
const leased = async () => (await poll(rig.base, worker, { max_jobs: 4 })).body.jobs.map((j) => j.job_id);
const killSwitch = async () => (await call<{ value: boolean }>(rig.base, '/v1/settings/cloud_routing.enabled')).body.value;

test.serial('signing in keeps the token out of the page: an HttpOnly session cookie, nothing in storage or the address', async (t) => {
  const state = await admin.evaluate<{ cookie: string; storage: number; href: string; who: string }>(
    `({ cookie: document.cookie, storage: localStorage.length + sessionStorage.length, href: location.href, who: document.querySelector('.who').textContent })`,
  );
  t.is(state.cookie, '', 'the session cookie is HttpOnly');
  t.is(state.storage, 0);
  t.false(state.href.includes(rig.gw.adminToken));
  t.is(state.who, 'Signed in: admin');
  await admin.waitForText('[data-testid=bundle]', 'runs revision test-suite');
  await admin.waitForText('table caption', 'Per replica');
  t.regex(await admin.evaluate<string>(`document.querySelector('section[aria-labelledby=bundle-h] tbody').textContent`), /:\d+test-suite/);
  await shot(admin, 'overview');
});

test.serial("flipping the kill switch in the console stops the worker's next poll", async (t) => {
  leasedJob = await submit();
  t.deepEqual(await leased(), [leasedJob], 'cloud routing is on: the job is leased');
  await admin.click('#kill-switch');
  await admin.waitFor(`document.querySelector('dialog[open]') !== null`);
  await shot(admin, 'kill-switch-confirm');
  await admin.click('dialog button[value=yes]');
  await admin.waitForText('[data-testid=kill-state]', 'Cloud routing is OFF');
  await admin.waitForText('[data-testid=kill-state]', 'Last set by admin');
  const depth = await admin.evaluate<string[]>(
    `[...document.querySelectorAll('section[aria-labelledby=queue-h] tbody tr')].map((r) => r.textContent)`,
  );
  t.true(depth.includes('leased1'), `queue depth from the gauge: ${depth.join(' ')}`);
  t.false(await killSwitch());
  waitingJob = await submit();
  t.deepEqual(await leased(), [], 'the next poll gets nothing');
  await shot(admin, 'kill-switch-off');
});

test.serial('a waiting job shows why: the last decision per node with its reasons', async (t) => {
  await admin.goto(`${rig.base}/console#/jobs/${waitingJob}`);
  await admin.waitForText('main h2', 'Why is this job waiting?');
  await admin.waitForText('ul.why li', 'cloud-console-01: denied — cloud_routing_disabled');
  t.pass();
  await shot(admin, 'job-waiting');
});

test.serial('a denied decision is found by its reason and opened: masked input, result, revision, eval time, audit rows', async (t) => {
  await admin.goto(`${rig.base}/console#/decisions`);
  await admin.waitFor(`document.querySelector('#f-decisions-reason') !== null`);
  await admin.fill('#f-decisions-reason', 'cloud_routing_disabled');
  await admin.evaluate(`document.querySelector('#f-decisions-allow').value = 'false'`);
  await admin.click('form.filters button[type=submit]');
  await admin.waitFor(`location.hash.includes('reason=cloud_routing_disabled')`);
  await admin.waitForText('table caption', 'decisions, newest first');
  const reasons = await admin.evaluate<string[]>(`[...document.querySelectorAll('tbody tr td:nth-child(4)')].map((td) => td.textContent)`);
  t.true(reasons.length > 0);
  t.true(reasons.every((r) => r.includes('cloud_routing_disabled')));
  await shot(admin, 'decisions-filtered');
  await admin.click('tbody tr a[href^="#/decisions/"]');
  await admin.waitForText('dl.facts', 'Bundle revision');
  const facts = await admin.evaluate<string>(`document.querySelector('dl.facts').textContent`);
  t.regex(facts, /cynode\/dispatch\/decision/);
  t.regex(facts, /cloud_routing_disabled/);
  t.regex(facts, /test-suite/);
  t.regex(facts, /Evaluation time\d+\.\d{3} ms/);
  await admin.waitForText('table caption', 'Dispatch answers (why a job waits)');
  await admin.waitForText('table td', waitingJob);
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
  await admin.waitFor(`document.querySelector('#replay-bundle') !== null`);
  await admin.waitForText('table caption', 'Activations on every replica');
  await admin.waitForText('tbody td', 'test-suite');
  await admin.setFiles('#replay-bundle', [candidate]);
  await admin.click('form.filters button[type=submit]');
  if (!hasRoute('post', '/v1/policy/replay')) {
    await admin.waitForText('.replay-results', 'Replay is not available on this gateway.');
    await shot(admin, 'policy-replay');
    t.pass('this gateway has no replay route: the page says so');
    return;
  }
  await admin.waitForText('.replay-results', 'Candidate stricter');
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
  await admin.waitForText('tbody td', 'cloud-console-01');
  await admin.click('button[aria-label="Quarantine cloud-console-01"]');
  await admin.waitFor(`document.querySelector('dialog[open] #quarantine-reason') !== null`);
  await admin.click('dialog button[value=yes]');
  if (!hasRoute('post', '/v1/workers/{node_id}/quarantine')) {
    await admin.waitForText('.status-line', 'Quarantine is not available on this gateway.');
  } else {
    await admin.waitFor(`!document.querySelector('.status-line [role=alert]')`);
    await call(rig.base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } });
    t.deepEqual(await leased(), [], 'a quarantined worker gets no job even with cloud routing on');
    await call(rig.base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: false } });
  }
  t.pass();
  await shot(admin, 'workers');
});

test.serial('a read-only session sees everything but is refused the kill switch', async (t) => {
  const reader = await rig.signedIn(READER_TOKEN);
  try {
    t.is(await reader.evaluate<string>(`document.querySelector('.who').textContent`), 'Signed in: read-only');
    await reader.click('#kill-switch');
    await reader.click('dialog button[value=yes]');
    await reader.waitForText('.status-line [role=alert]', 'Refused');
    t.false(await killSwitch(), 'the switch stays where the admin left it');
    const direct = await reader.evaluate<number>(
      `(async () => { const s = await (await fetch('/console/session')).json();
        return (await fetch('/v1/settings/cloud_routing.enabled', { method: 'PUT', headers: { 'content-type': 'application/json', 'x-cynode-csrf': s.csrf }, body: '{"value":true}' })).status; })()`,
    );
    t.is(direct, 403, 'the API refuses the reader session even with its CSRF token');
    await shot(reader, 'read-only-refused');
  } finally {
    await reader.evaluate(`fetch('/console/session', { method: 'DELETE' })`).catch(() => undefined);
  }
});

test.serial('every page loads, with labelled controls, named buttons and links, captions and landmarks', async (t) => {
  for (const page of ['overview', 'decisions', 'jobs', 'workers', 'spend', 'policy', 'audit']) {
    await admin.goto(`${rig.base}/console#/${page}`);
    await admin.waitFor(
      `document.querySelector('nav a[aria-current=page]')?.dataset.page === '${page}' && !document.querySelector('main .loading')`,
    );
    const problems = await admin.evaluate<string[]>(A11Y_AUDIT);
    t.deepEqual(problems, [], `${page}: ${problems.join('; ')}`);
    t.is(
      await admin.evaluate<string | null>(`document.querySelector('main [role=alert]')?.textContent ?? null`),
      null,
      `${page} shows no error`,
    );
  }
  await admin.waitForText('table caption', 'Chain verification');
  await admin.waitForText('tbody td', 'intact');
  await shot(admin, 'audit');
  await admin.goto(`${rig.base}/console#/spend`);
  await admin.waitForText('figcaption', 'Settled spend per hour');
  await shot(admin, 'spend');
});

test.serial(
  'the console is usable from the keyboard: skip link, sections in order, Enter follows, Escape cancels a confirmation',
  async (t) => {
    await admin.goto(`${rig.base}/console?fresh=1#/overview`); // a new document: focus starts at the top
    await admin.waitFor(`document.querySelector('#kill-switch') !== null`);
    const focused: string[] = [];
    for (let i = 0; i < 9; i++) {
      await admin.press('Tab');
      focused.push(await admin.evaluate<string>(`document.activeElement.textContent.trim()`));
    }
    t.deepEqual(focused, ['Skip to content', 'Overview', 'Decisions', 'Jobs', 'Workers', 'Spend', 'Policy', 'Audit', 'Sign out']);
    await admin.press('Tab', true); // back to Audit
    await admin.press('Tab', true); // Policy
    await admin.press('Enter');
    await admin.waitFor(`location.hash === '#/policy' && document.activeElement.id === 'main'`);
    t.is(await admin.evaluate<string>(`document.querySelector('main h1').textContent`), 'Policy');

    await admin.goto(`${rig.base}/console#/overview`);
    await admin.waitFor(`document.querySelector('#kill-switch') !== null`);
    await admin.evaluate(`document.querySelector('#kill-switch').focus()`);
    await admin.press('Enter');
    await admin.waitFor(`document.querySelector('dialog[open]') !== null`);
    t.is(await admin.evaluate<string>(`document.activeElement.textContent`), 'Cancel', 'the dialog opens on its safe choice');
    await admin.press('Escape');
    await admin.waitFor(`document.querySelector('dialog') === null && document.activeElement.id === 'kill-switch'`);
    t.false(await killSwitch(), 'Escape changed nothing');
  },
);

test.serial('the console loads scripts and styles only from the gateway itself', async (t) => {
  const origin = new URL(rig.base).origin;
  const seen = admin.requests.filter((r) => !r.url.startsWith('data:') && r.url !== 'about:blank');
  t.true(seen.some((r) => r.type === 'Script' && r.url === `${origin}/console/assets/app.js`));
  t.true(seen.some((r) => r.type === 'Stylesheet' && r.url === `${origin}/console/assets/app.css`));
  t.deepEqual(
    seen.filter((r) => !r.url.startsWith(`${origin}/`)),
    [],
    'nothing from anywhere else',
  );
  const res = await fetch(`${rig.base}/console`);
  t.regex(res.headers.get('content-security-policy') ?? '', /default-src 'self'.*frame-ancestors 'none'/);
  t.false((await res.text()).includes('<script>'), 'no inline script');
});

// Checked in the page on every console page: every form control has a label, every button and
// link a name, tables a caption and column headers, charts an accessible name, one h1, and the
// nav and main landmarks.
const A11Y_AUDIT = `(() => {
  const problems = [];
  const name = (e) => (e.getAttribute('aria-label') || e.textContent || '').trim();
  for (const c of document.querySelectorAll('input, select, textarea')) {
    if (c.type === 'hidden') continue;
    if (c.labels.length === 0 && !c.getAttribute('aria-label')) problems.push('unlabelled ' + c.tagName + '#' + c.id);
  }
  for (const b of document.querySelectorAll('button, a[href]')) if (!name(b)) problems.push('unnamed ' + b.outerHTML.slice(0, 60));
  for (const tb of document.querySelectorAll('table')) {
    if (!tb.caption) problems.push('table without caption');
    if (tb.querySelectorAll('th[scope=col]').length === 0) problems.push('table without column headers');
  }
  for (const s of document.querySelectorAll('svg')) if (s.getAttribute('role') !== 'img' || !s.getAttribute('aria-label')) problems.push('unnamed chart');
  if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
  if (!document.querySelector('nav[aria-label]')) problems.push('no labelled nav');
  if (!document.querySelector('main')) problems.push('no main');
  const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
  if (new Set(ids).size !== ids.length) problems.push('duplicate ids');
  return problems;
})()`;
