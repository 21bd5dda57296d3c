import { randomUUID } from 'node:crypto';
import test from 'ava';
import { WRITE_CLAIM } from '../../src/jobs/dispatch.js';
import { migratedDatabase } from '../egress/migrated-database.js';

// A claim writes one to a few leases, but the planner takes each JSON list for 100 rows: against
// a table of a few thousand jobs it would rather scan the table for 100 rows than look them up.
// The statement must reach the jobs and decisions it writes by their keys however it is planned.
test("a claim's write reaches its jobs and decisions by key, not by scanning a table of thousands", async (t) => {
  const db = await migratedDatabase();
  t.teardown(() => db.drop());
  const { knex } = db;
  await knex.raw(`INSERT INTO jobs (id, task_id, user_id, requirements, preferences, estimated_cost_usd, payload, priority, max_attempts,
      timeout_ms, state, available_at, submitted_by, created_at, updated_at)
    SELECT gen_random_uuid(), 'task-' || i, 'user', '{}', '{}', 0, '{}', 0, 3, 60000, 'queued', now(), 'test', now(), now()
      FROM generate_series(1, 5000) i`);
  await knex.raw(`INSERT INTO job_decisions (job_id, node_id, decision_id, allow, reasons, score, revision, epoch, recheck_at, decided_at)
    SELECT id, 'node-' || n, gen_random_uuid()::text, false, '[]', 0, 'r', 'e', now(), now() FROM jobs, generate_series(1, 2) n`);
  await knex.raw('ANALYZE jobs, job_decisions');
  const [leased, waiting] = (await knex('jobs').select('id').limit(2)) as { id: string }[];
  const at = new Date().toISOString();
  const leases = [
    {
      job_id: leased!.id,
      lease_id: randomUUID(),
      attempt: 1,
      lease_expires_at: at,
      deadline: at,
      decision_id: 'd1',
      node_id: 'node-1',
      at,
    },
  ];
  const decisions = [
    {
      job_id: waiting!.id,
      node_id: 'node-1',
      decision_id: 'd2',
      allow: false,
      reasons: [],
      score: 0,
      revision: 'r',
      epoch: 'e',
      recheck_at: at,
      at,
    },
  ];
  const { rows } = (await knex.raw(`EXPLAIN (FORMAT JSON) ${WRITE_CLAIM}`, [JSON.stringify(leases), JSON.stringify(decisions)])) as {
    rows: { 'QUERY PLAN': unknown }[];
  };
  const scans: string[] = [];
  const lookups: string[] = [];
  const walk = (node: Record<string, unknown>) => {
    const relation = node['Relation Name'] as string | undefined;
    if (relation && node['Node Type'] === 'Seq Scan') scans.push(relation);
    if (/Index/.test(String(node['Node Type'])) || node['Node Type'] === 'Bitmap Heap Scan')
      lookups.push(String(relation ?? node['Index Name']));
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
  };
  walk((rows[0]!['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0]!.Plan);
  t.deepEqual(scans, [], 'no table is scanned whole');
  t.true(lookups.includes('jobs') && lookups.includes('job_decisions'), `looked up by index: ${lookups.join(', ')}`);
});
