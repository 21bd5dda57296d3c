import { randomBytes } from 'node:crypto';
import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { runCli } from '../helpers/gateway.js';
import { call } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, submitJob } from '../helpers/workers.js';

// The README's Example 1, all of it: the OpenAI key is stored in the gateway, the reference
// worker (configured by its CYNODE_* variables only) leases an api.call job and asks API
// Egress, which injects the key, calls (fake) OpenAI, audits and answers.
const OPENAI_KEY = `sk-proj-${randomBytes(24).toString('hex')}`;
let gw: BootedGateway;
let fake: FakeProvider;
const logs = captureLogger();

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({
    env: { CYNODE_OPENAI_BASE_URL: fake.url, CYNODE_WORKER_POLL_INTERVAL_MS: '200' },
    roles: ['control', 'egress'],
    logger: logs.logger,
  });
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

test('Example 1: reference worker → api.call → gateway → egress → OpenAI with the injected key, which the worker never sees', async (t) => {
  const base = gw.url('control');
  t.is((await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'openai-prod', secret: OPENAI_KEY } })).status, 201);
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  const psk = (await createPsk(base, 'example-1')).secret;
  const submitted = await submitJob(base, {
    task_id: 'ex1-task',
    user_id: 'ex1-user',
    budget_usd: 0.5,
    requirements: { providers: ['openai'], labels: ['cloud'] },
    payload: {
      kind: 'api.call',
      provider: 'openai',
      operation: 'chat.completions',
      params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Summarise the plan' }] },
    },
  });
  t.is(submitted.status, 201);
  const id = String(submitted.body.id);

  const run = await runCli(['worker', '--max-jobs', '1'], {
    CYNODE_ORCH_URL: base,
    CYNODE_NODE_ID: 'cloud-us-east-1-01',
    CYNODE_REGISTER_PSK: psk,
    CYNODE_LABELS: 'cloud,provider_openai',
    CYNODE_CAP_REGION: 'us-east-1',
    CYNODE_CAP_SUPPORTED_PROVIDERS: 'openai',
    CYNODE_CAP_RATE_LIMIT_RPM: '300',
    CYNODE_LOG_LEVEL: 'debug',
  });
  t.is(run.code, 0, run.stderr);

  const view = await call<Record<string, any>>(base, `/v1/jobs/${id}`);
  t.is(view.body.state, 'succeeded', JSON.stringify(view.body.error));
  t.is(view.body.result.status, 'ok');
  t.is(view.body.result.result.choices[0].message.content, 'Hello from the fake provider');
  t.true(view.body.result.cost_usd > 0);
  t.is(fake.received.length, 1);
  t.is(fake.received[0]!.headers.authorization, `Bearer ${OPENAI_KEY}`, 'OpenAI saw the key the gateway injected');

  await gw.gateway.audit.flush();
  const audit = (await call<{ records: Record<string, any>[] }>(base, '/v1/audit?task_id=ex1-task')).body.records;
  t.is(audit.length, 1);
  t.like(audit[0], {
    gate: 'egress',
    outcome: 'ok',
    subject_kind: 'worker',
    subject_id: 'cloud-us-east-1-01',
    job_id: id,
    user_id: 'ex1-user',
    provider: 'openai',
  });

  await gw.gateway.decisionLog.flush();
  const scanned = {
    'worker output': run.stdout + run.stderr,
    'job view': JSON.stringify(view.body),
    'gateway logs': logs.lines.join('\n'),
    'audit rows': JSON.stringify(await gw.gateway.db.knex('api_audit').select()),
    'decision log': JSON.stringify(await gw.gateway.db.knex('decision_log').select('input', 'result')),
  };
  for (const [where, text] of Object.entries(scanned)) t.false(text.includes(OPENAI_KEY), `the key is not in the ${where}`);
  t.false(scanned['worker output'].includes(psk), 'nor is the PSK in the worker output');
});
