import test from 'ava';
import Koa from 'koa';
import { listen } from '../../src/server/listen.js';
import { testConfig } from '../helpers/config.js';

function slowApp(ms: number): Koa {
  const app = new Koa();
  app.use(async (ctx) => {
    await new Promise((r) => setTimeout(r, ms));
    ctx.body = { done: true };
  });
  return app;
}

const server = testConfig().server;

test('close lets an in-flight request finish within the grace period', async (t) => {
  const l = await listen('control', slowApp(300), '127.0.0.1', 0, server);
  const inFlight = fetch(`http://127.0.0.1:${l.port}/`).then(async (r) => ({ status: r.status, body: await r.json() }));
  await new Promise((r) => setTimeout(r, 50));
  const started = Date.now();
  await l.close(5000);
  t.deepEqual(await inFlight, { status: 200, body: { done: true } });
  t.true(Date.now() - started < 2000, 'close returned as soon as the request finished');
  await t.throwsAsync(() => fetch(`http://127.0.0.1:${l.port}/`));
});

test('close cuts a request that outlives the grace period', async (t) => {
  const l = await listen('control', slowApp(3000), '127.0.0.1', 0, server);
  const inFlight = fetch(`http://127.0.0.1:${l.port}/`);
  await new Promise((r) => setTimeout(r, 50));
  const started = Date.now();
  await l.close(200);
  await t.throwsAsync(() => inFlight);
  t.true(Date.now() - started < 2000);
});
