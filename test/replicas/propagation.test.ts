import { copyFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { packageRoot } from '../../src/lib/package-root.js';
import { buildBundle, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { ensureBundle } from '../helpers/bundle.js';
import { TEST_ADMIN_TOKEN, tempDir } from '../helpers/config.js';
import { CLOUD_DISPATCH_INPUT } from '../helpers/fixtures.js';
import { call } from '../helpers/http.js';
import { ADMIN_URL, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { type Replica, type Replicas, startListenBlocker, startReplicas, viaPort } from '../helpers/replicas.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// Three gateway processes on one PostgreSQL behave as one: the kill switch, a runtime
// setting, a preference and a new bundle revision, each changed through replica 0, reach
// all three. First through LISTEN/NOTIFY (every polling fallback set far beyond the test's
// patience), then with LISTEN taken away (the database proxy refuses the gateway's LISTEN
// connection) through the polling fallbacks alone.

const TOOL_INPUT = {
  action: 'mcp.tool.invoke',
  subject: { kind: 'worker', node_id: 'cloud-prop-01', labels: ['cloud'], agent_type: 'worker' },
  resource: { tool: 'artifacts.artifact_get' },
  context: { task_id: 'task-prop', job_id: 'job-1', lease_active: true, arguments: { task_id: 'task-prop', name: 'a' } },
};

type Result = { result: { allow: boolean; reasons: string[] } };
const reasons = async (r: Replica, path: string, input: unknown) => {
  const res = await call<Result>(r.url, `/v1/data/${path}`, { json: { input } });
  if (res.status !== 200) throw new Error(`decision failed on ${r.url}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.result.reasons;
};
const revisionOf = async (r: Replica) =>
  (await call<{ bundles: { cynode: { active?: { revision: string } } } }>(r.url, '/v1/status')).body.bundles.cynode.active?.revision;

/** Waits until `check` holds on every replica; returns the ms each one took after `since`. */
async function onEvery(replicas: Replica[], since: number, limitMs: number, check: (r: Replica) => Promise<boolean>): Promise<number[]> {
  return Promise.all(
    replicas.map(async (r) => {
      while (Date.now() - since < limitMs) {
        if (await check(r)) return Date.now() - since;
        await new Promise((res) => setTimeout(res, 20));
      }
      throw new Error(`${r.url} did not see the change within ${limitMs} ms`);
    }),
  );
}

/** Rebuilds the real policies under `revision` and swaps them into `path` atomically. */
async function publish(path: string, revision: string): Promise<void> {
  const tmp = join(tempDir(), 'next.tar.gz');
  await buildBundle({ policiesDir: join(packageRoot(), 'policies'), out: tmp, entrypoints: REQUIRED_ENTRYPOINTS, revision });
  renameSync(tmp, path);
}

/**
 * Replica 0 loads the bundle file; replicas 1 and 2 pull it from replica 0's bundle service
 * (the production shape: one source, the others followers) with the given poll delay.
 */
async function trio(
  t: ExecutionContext,
  databaseUrl: string,
  bundleFile: string,
  env: Record<string, string>,
  pollDelayMs: number,
): Promise<Replicas> {
  const group = await startReplicas(1, { DATABASE_URL: databaseUrl, CYNODE_BUNDLE: bundleFile, ...env });
  t.teardown(() => group.stop());
  const follow = {
    CYNODE_BUNDLE: `${group.replicas[0]!.url}/v1/bundles/cynode`,
    CYNODE_BUNDLE_TOKEN: TEST_ADMIN_TOKEN,
    CYNODE_BUNDLE_POLL_MIN_DELAY_MS: String(pollDelayMs),
    CYNODE_BUNDLE_POLL_MAX_DELAY_MS: String(pollDelayMs),
  };
  await Promise.all([group.add(follow), group.add(follow)]);
  return group;
}

/** Changes all four things through replica 0 and measures when each replica has them. */
async function changeAndMeasure(t: ExecutionContext, group: Replicas, bundleFile: string, limitMs: number, label: string): Promise<void> {
  const all = group.replicas;
  const [r0] = all as [Replica];

  // One cloud worker per replica, each with a cloud job it may not take while the user's
  // preference keeps cloud work off (the default).
  const psk = (await createPsk(r0.url)).secret;
  const workers: TestWorker[] = [];
  for (const [i, r] of all.entries()) {
    workers.push(await registerWorker(r.url, psk, { node_id: `cloud-${label}-${i}`, supported_models: [`m-${label}`] }));
  }
  for (let i = 0; i < all.length; i++) {
    t.is(
      (await submitJob(r0.url, { task_id: `task-${label}`, user_id: `user-${label}`, requirements: { models: [`m-${label}`] } })).status,
      201,
    );
  }
  for (const [i, r] of all.entries())
    t.deepEqual((await poll(r.url, workers[i]!)).body.jobs, [], 'no cloud work before the preference allows it');

  // Kill switch.
  for (const r of all) t.false((await reasons(r, 'cynode/dispatch/decision', CLOUD_DISPATCH_INPUT)).includes('cloud_routing_disabled'));
  let since = Date.now();
  t.is((await call(r0.url, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: false } })).status, 200);
  const killMs = await onEvery(all, since, limitMs, async (r) =>
    (await reasons(r, 'cynode/dispatch/decision', CLOUD_DISPATCH_INPUT)).includes('cloud_routing_disabled'),
  );
  t.log(`${label}: kill switch reached the 3 replicas in ${killMs.join(', ')} ms`);
  since = Date.now();
  t.is((await call(r0.url, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } })).status, 200);
  const backMs = await onEvery(
    all,
    since,
    limitMs,
    async (r) => !(await reasons(r, 'cynode/dispatch/decision', CLOUD_DISPATCH_INPUT)).includes('cloud_routing_disabled'),
  );
  t.log(`${label}: kill switch released on the 3 replicas in ${backMs.join(', ')} ms`);

  // Another runtime setting: an MCP tool switched off.
  for (const r of all) t.false((await reasons(r, 'cynode/mcp_tool_invoke/decision', TOOL_INPUT)).includes('tool_disabled'));
  since = Date.now();
  t.is(
    (await call(r0.url, '/v1/settings/mcp.disabled_tools', { method: 'PUT', json: { value: { 'artifacts.artifact_get': true } } })).status,
    200,
  );
  const toolMs = await onEvery(all, since, limitMs, async (r) =>
    (await reasons(r, 'cynode/mcp_tool_invoke/decision', TOOL_INPUT)).includes('tool_disabled'),
  );
  t.log(`${label}: mcp.disabled_tools reached the 3 replicas in ${toolMs.join(', ')} ms`);

  // A preference: the user allows cloud work; each replica's worker then gets its job.
  since = Date.now();
  t.is((await call(r0.url, `/v1/preferences/user/user-${label}/cloud_allowed`, { method: 'PUT', json: { value: true } })).status, 200);
  const leased = new Set<string>();
  const prefMs = await onEvery(all, since, limitMs, async (r) => {
    const jobs = (await poll(r.url, workers[all.indexOf(r)]!, { max_jobs: 1 })).body.jobs;
    for (const j of jobs) leased.add(j.job_id);
    return jobs.length > 0;
  });
  t.is(leased.size, all.length, 'each job leased once, one per replica');
  t.log(`${label}: user preference reached the 3 replicas in ${prefMs.join(', ')} ms`);

  // A new bundle revision, published where replica 0 loads it.
  for (const r of all) t.is(await revisionOf(r), 'test-suite');
  const revision = `prop-${label}`;
  await publish(bundleFile, revision);
  since = Date.now();
  const bundleMs = await onEvery(all, since, limitMs, async (r) => (await revisionOf(r)) === revision);
  t.log(`${label}: bundle revision ${revision} active on the 3 replicas in ${bundleMs.join(', ')} ms`);
}

let bundle: string;
const dbs: TestDatabase[] = [];
test.before(async () => {
  bundle = await ensureBundle();
});
test.after.always(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

test.serial('through LISTEN/NOTIFY, every change made on one replica reaches all three long before any poll', async (t) => {
  const db = await createTestDatabase();
  dbs.push(db);
  const bundleFile = join(tempDir(), 'bundle.tar.gz');
  copyFileSync(bundle, bundleFile);
  // Polling would take 30 s (bundle) or 20 s (job wakes); the runtime-data poll runs every
  // 5 s, so only NOTIFY explains changes seen well inside that.
  const group = await trio(t, db.url, bundleFile, { CYNODE_JOB_WAKE_FALLBACK_MS: '20000' }, 30_000);
  await new Promise((r) => setTimeout(r, 300)); // let the LISTEN connections settle
  await changeAndMeasure(t, group, bundleFile, 2_500, 'notify');
});

test.serial('without LISTEN, polling carries every change to all three replicas', async (t) => {
  const db = await createTestDatabase();
  dbs.push(db);
  const blocker = await startListenBlocker(Number(new URL(ADMIN_URL).port || 5432));
  t.teardown(() => blocker.close());
  const bundleFile = join(tempDir(), 'bundle.tar.gz');
  copyFileSync(bundle, bundleFile);
  const group = await trio(t, viaPort(db.url, blocker.port), bundleFile, { CYNODE_JOB_WAKE_FALLBACK_MS: '500' }, 1_000);
  t.true(blocker.refused() >= 3, `every replica's LISTEN connection refused (${blocker.refused()})`);
  for (const r of group.replicas) t.regex(r.process.output(), /cannot LISTEN; polling meanwhile/);
  // The runtime-data poll runs every 5 s; the bundle followers poll every second.
  await changeAndMeasure(t, group, bundleFile, 9_000, 'polling');
  // Each replica retries LISTEN with backoff (a handful of attempts in this time), never a storm.
  t.log(`LISTEN attempts refused: ${blocker.refused()}`);
  t.true(blocker.refused() < 60, `${blocker.refused()} LISTEN attempts`);
});
