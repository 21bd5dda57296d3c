import test from 'ava';
import pg from 'pg';
import pino from 'pino';
import { listenChannels } from '../../src/storage/listener.js';
import { eventually } from '../helpers/http.js';
import { createTestDatabase } from '../helpers/postgres.js';

test('every part listening on one channel is told of each notification', async (t) => {
  const tdb = await createTestDatabase();
  const listener = listenChannels({ url: tdb.url, channels: {}, logger: pino({ level: 'silent' }) });
  const heard: string[] = [];
  listener.on('cynode_test', (p) => p && heard.push(`a:${p}`));
  listener.on('cynode_test', (p) => p && heard.push(`b:${p}`));
  const client = new pg.Client({ connectionString: tdb.url });
  try {
    await eventually(() => listener.listening('cynode_test'));
    await client.connect();
    await client.query(`SELECT pg_notify('cynode_test', 'x')`);
    await eventually(() => heard.length === 2);
    t.deepEqual(heard.sort(), ['a:x', 'b:x']);
  } finally {
    await client.end();
    await listener.close();
    await tdb.drop();
  }
});
