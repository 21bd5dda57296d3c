import test from 'ava';
import { bootGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { captureLogger } from '../helpers/start.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { createPsk, registerWorker, submitJob } from '../helpers/workers.js';

interface Line {
  level: string;
  msg: string;
  repeated?: number;
  failures?: number;
}
const LOUD = new Set(['warn', 'error', 'fatal']);

test('a database outage is logged once per interval with a count, not once per attempt, and its end is logged', async (t) => {
  const db = await createTestDatabase();
  const proxy = await startTcpProxy('127.0.0.1', 5432);
  t.teardown(async () => {
    await proxy.close();
    await db.drop();
  });
  const viaProxy = new URL(db.url);
  viaProxy.port = String(proxy.port);
  const logs = captureLogger();
  const gw = await bootGateway({
    database: { ...db, url: viaProxy.toString() },
    logger: logs.logger,
    env: {
      CYNODE_DATABASE_CONNECT_TIMEOUT_MS: '200',
      CYNODE_READY_CHECK_TIMEOUT_MS: '200',
      CYNODE_JOB_REAPER_INTERVAL_MS: '50',
      CYNODE_EGRESS_REAPER_INTERVAL_MS: '100',
      CYNODE_DECISION_LOG_ENQUEUE_TIMEOUT_MS: '100',
      CYNODE_AUDIT_ENQUEUE_TIMEOUT_MS: '100',
    },
  });
  t.teardown(() => gw.stop());
  const base = gw.url();
  const psk = (await createPsk(base, 'outage')).secret;
  const worker = await registerWorker(base, psk);

  proxy.cut();
  const before = logs.lines.length;
  const until = Date.now() + 3000;
  let requests = 0;
  const drive = async () => {
    while (Date.now() < until) {
      requests++;
      await Promise.all([
        call(base, '/v1/jobs'),
        submitJob(base, { task_id: 'outage' }),
        call(base, '/jobs/poll', { token: worker.token, json: { wait_ms: 0 } }),
        call(base, '/readyz', { token: null }),
        call(base, '/register', { token: null, headers: { 'x-cynode-psk': psk }, json: worker.report }),
      ]);
    }
  };
  await Promise.all([drive(), drive(), drive(), drive()]);
  const during = logs.lines.slice(before).map((l) => JSON.parse(l) as Line);
  const loud = during.filter((l) => LOUD.has(l.level));
  const byMsg = new Map<string, number>();
  for (const l of loud) byMsg.set(l.msg, (byMsg.get(l.msg) ?? 0) + 1);
  t.log(`${during.length} lines; ${requests * 5} requests in 3 s; ${loud.length} warn/error lines: ${JSON.stringify([...byMsg])}`);
  t.true(requests * 5 > 200, 'the gateway was driven hard');
  t.true(loud.length <= 20, `${loud.length} lines`);

  proxy.restore();
  const after = logs.lines.length;
  let ready = 0;
  for (let i = 0; i < 50 && ready !== 200; i++) {
    ready = (await call(base, '/readyz', { token: null })).status;
    if (ready !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  t.is(ready, 200);
  await call(base, '/v1/jobs');
  await new Promise((r) => setTimeout(r, 1500));
  const recovered = logs.lines.slice(after).map((l) => JSON.parse(l) as Line);
  // The end of the outage is logged with how many failures the quiet lines stood for.
  const ended = recovered.filter((l) => /works again|listening for changes again/.test(l.msg));
  t.true(ended.length > 0, JSON.stringify(recovered.map((l) => l.msg)));
  t.true(
    ended.some((l) => (l.failures ?? 0) > 1),
    JSON.stringify(ended),
  );
});
