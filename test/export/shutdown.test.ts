import test from 'ava';
import { bootGateway } from '../helpers/boot.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { call } from '../helpers/http.js';
import { startSink } from './sink.js';

const PATH = '/v1/data/cynode/register/decision';

test('shutdown uploads what is still buffered, within its bound', async (t) => {
  const sink = await startSink();
  const gw = await bootGateway({
    env: {
      CYNODE_DECISION_LOG_EXPORT_URL: sink.url,
      // No upload would happen for a minute: only the final flush can deliver these.
      CYNODE_DECISION_LOG_EXPORT_MIN_DELAY_MS: '60000',
      CYNODE_DECISION_LOG_EXPORT_MAX_DELAY_MS: '60000',
    },
  });
  try {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      ids.push((await call<{ decision_id: string }>(gw.url(), PATH, { json: { input: { subject: SEED_WORKER } } })).body.decision_id);
    }
    t.is(sink.events().length, 0);
    await gw.stop();
    const arrived = new Set(sink.events().map((e) => e.decision_id as string));
    t.true(ids.every((id) => arrived.has(id)));
  } finally {
    await gw.stop();
    await sink.close();
  }
});

test('shutdown gives up on a sink that keeps failing after flushTimeoutMs', async (t) => {
  const sink = await startSink();
  sink.status = 500;
  const gw = await bootGateway({
    env: {
      CYNODE_DECISION_LOG_EXPORT_URL: sink.url,
      CYNODE_DECISION_LOG_EXPORT_MIN_DELAY_MS: '60000',
      CYNODE_DECISION_LOG_EXPORT_MAX_DELAY_MS: '60000',
      CYNODE_DECISION_LOG_EXPORT_FLUSH_TIMEOUT_MS: '300',
    },
  });
  try {
    await call(gw.url(), PATH, { json: { input: { subject: SEED_WORKER } } });
    const started = Date.now();
    await gw.stop();
    // Unbounded, it would retry for ever; the whole stop (drain, database) fits well within this on a busy machine.
    t.true(Date.now() - started < 30_000);
    t.true(sink.refused > 0);
  } finally {
    await gw.stop();
    await sink.close();
  }
});
