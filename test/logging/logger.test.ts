import { Writable } from 'node:stream';
import test from 'ava';
import { createLogger, redactUrl } from '../../src/logging/index.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, logger: createLogger({ level: 'trace', destination }) };
}

const PSK = 'psk_live_3f9a1c7e5b2d4f6a8c0e';
const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjbG91ZC0wMSJ9.c2lnbmF0dXJl';
const PROVIDER_KEY = 'sk-proj-AbCdEf0123456789';

test('secrets are redacted wherever the log paths put them', (t) => {
  const { lines, logger } = capture();
  logger.info({ req: { headers: { authorization: `Bearer ${JWT}`, 'x-cynode-psk': PSK, 'user-agent': 'worker/1' } } }, 'request');
  logger.child({ component: 'egress' }).warn({ credential: { apiKey: PROVIDER_KEY, provider: 'openai' } }, 'credential');
  logger.info({ psk: PSK, token: JWT, worker: { secret: PSK, node_id: 'cloud-01' } }, 'registration');
  logger.info({ config: { database: { url: 'postgres://gw:hunter2@db/gw' } } }, 'config');
  const text = lines.join('\n');
  for (const secret of [PSK, JWT, PROVIDER_KEY, 'hunter2']) t.false(text.includes(secret), `leaked ${secret}`);
  t.true(text.includes('[REDACTED]'));
  // what is not secret stays readable
  t.true(text.includes('worker/1'));
  t.true(text.includes('cloud-01'));
  t.true(text.includes('openai'));
  t.is(lines.length, 4);
  const first = JSON.parse(lines[0]!) as { level: string; service: string; time: string };
  t.is(first.level, 'info');
  t.is(first.service, 'cynode-gateway');
  t.regex(first.time, /^\d{4}-\d\d-\d\dT/);
});

test('redactUrl hides the password and secret query parameters, keeps the rest', (t) => {
  t.is(redactUrl('postgres://gw:hunter2@db:5432/gw'), 'postgres://gw:***@db:5432/gw');
  t.is(redactUrl('postgres://db/gw?sslmode=require&password=x1'), 'postgres://db/gw?sslmode=require&password=***');
  t.is(redactUrl('postgres://db/gw'), 'postgres://db/gw');
  t.is(redactUrl('not a url'), '(unparseable URL)');
});
