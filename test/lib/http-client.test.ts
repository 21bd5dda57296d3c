import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import test from 'ava';
import { createHttpClient, HttpTimeoutError, HttpTooLargeError } from '../../src/lib/http-client.js';

let server: http.Server;
let base: string;
const sockets = new Set<string>();

test.before(async () => {
  server = http.createServer((req, res) => {
    sockets.add(`${req.socket.remotePort}`);
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/echo') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.writeHead(201, { 'x-method': req.method ?? '' }).end(Buffer.concat(chunks)));
    } else if (url.pathname === '/hang') {
      // never answers
    } else if (url.pathname === '/stall') {
      res.writeHead(200);
      res.write('first');
    } else if (url.pathname === '/drip') {
      res.writeHead(200);
      let n = 0;
      const timer = setInterval(() => (++n > 5 ? (clearInterval(timer), res.end()) : res.write(`${n}`)), 40);
    } else if (url.pathname === '/big') {
      res.writeHead(200).end('x'.repeat(10_000));
    } else if (url.pathname === '/redirect') {
      res.writeHead(Number(url.searchParams.get('status')), { location: url.searchParams.get('to') ?? '' }).end('moved');
    } else if (url.pathname === '/headers') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () =>
        res.writeHead(200).end(JSON.stringify({ method: req.method, headers: req.headers, body: Buffer.concat(chunks).toString() })),
      );
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
test.after.always(() => {
  server.closeAllConnections();
  server.close();
});

const client = createHttpClient({ maxSockets: 4 });
test.after.always(() => client.close());

test.serial('a request is sent with its body; the answer is read whole', async (t) => {
  const res = await client.request(new URL('/echo', base), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
  t.is(res.status, 201);
  t.is(res.headers['x-method'], 'POST');
  t.is(await res.text(), 'hello');
});

test.serial('connections are kept alive and reused', async (t) => {
  sockets.clear();
  for (let i = 0; i < 3; i++) await (await client.request(new URL('/echo', base), { method: 'POST', headers: {}, body: String(i) })).text();
  t.is(sockets.size, 1);
});

test.serial('no headers in time is a response timeout', async (t) => {
  const err = await t.throwsAsync(client.request(new URL('/hang', base), { method: 'POST', headers: {}, responseTimeoutMs: 50 }), {
    instanceOf: HttpTimeoutError,
  });
  t.is(err?.phase, 'response');
});

test.serial('a body that goes quiet is an idle timeout, seen where it is read', async (t) => {
  const res = await client.request(new URL('/stall', base), { method: 'GET', headers: {}, idleTimeoutMs: 50 });
  const err = await t.throwsAsync(res.text(), { instanceOf: HttpTimeoutError });
  t.is(err?.phase, 'idle');
});

test.serial('a body that keeps arriving is not idle, but the whole exchange is bounded', async (t) => {
  const ok = await client.request(new URL('/drip', base), { method: 'GET', headers: {}, idleTimeoutMs: 150 });
  t.is(await ok.text(), '12345');
  const slow = await client.request(new URL('/drip', base), { method: 'GET', headers: {}, idleTimeoutMs: 150, totalTimeoutMs: 100 });
  const err = await t.throwsAsync(slow.text(), { instanceOf: HttpTimeoutError });
  t.is(err?.phase, 'total');
});

test.serial('a timeout nobody reads the body for does not crash the process', async (t) => {
  await client.request(new URL('/stall', base), { method: 'GET', headers: {}, idleTimeoutMs: 20 });
  await new Promise((r) => setTimeout(r, 80));
  t.pass();
});

test.serial('a body read after its bound ran out fails with that timeout instead of waiting', async (t) => {
  const res = await client.request(new URL('/stall', base), { method: 'GET', headers: {}, idleTimeoutMs: 20 });
  await new Promise((r) => setTimeout(r, 80));
  const err = await t.throwsAsync(res.text(), { instanceOf: HttpTimeoutError });
  t.is(err?.phase, 'idle');
});

test.serial('an answer over the size cap is refused', async (t) => {
  const res = await client.request(new URL('/big', base), { method: 'GET', headers: {}, maxResponseBytes: 1000 });
  await t.throwsAsync(res.text(), { instanceOf: HttpTooLargeError });
  const fits = await client.request(new URL('/big', base), { method: 'GET', headers: {}, maxResponseBytes: 10_000 });
  t.is((await fits.text()).length, 10_000);
});

test.serial('the body streams chunk by chunk', async (t) => {
  const res = await client.request(new URL('/drip', base), { method: 'GET', headers: {} });
  const chunks: string[] = [];
  for await (const c of res.body) chunks.push(Buffer.from(c).toString());
  t.true(chunks.length > 1);
  t.is(chunks.join(''), '12345');
});

test.serial('an abort signal stops the request', async (t) => {
  const controller = new AbortController();
  const pending = client.request(new URL('/hang', base), { method: 'GET', headers: {}, signal: controller.signal });
  setTimeout(() => controller.abort(), 20);
  const err = await t.throwsAsync(pending);
  t.is(err?.name, 'AbortError');
});

test.serial('a refused connection fails with the socket error code', async (t) => {
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const err = await t.throwsAsync(client.request(new URL(`http://127.0.0.1:${port}/`), { method: 'GET', headers: {} }));
  t.is((err as NodeJS.ErrnoException).code, 'ECONNREFUSED');
});

type Seen = { method: string; headers: Record<string, string>; body: string };
const moved = (status: number, to: string) => new URL(`/redirect?status=${status}&to=${encodeURIComponent(to)}`, base);

test.serial('a redirect is the answer unless the request asks to follow it', async (t) => {
  const res = await client.request(moved(302, '/headers'), { method: 'GET', headers: {} });
  t.is(res.status, 302);
  t.is(res.headers.location, '/headers');
  res.destroy();
});

test.serial('redirects are followed like fetch does: 307 keeps the method and body, 303 becomes a GET', async (t) => {
  const kept = JSON.parse(
    await (
      await client.request(moved(307, '/headers'), {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'hi',
        maxRedirects: 3,
      })
    ).text(),
  ) as Seen;
  t.like(kept, { method: 'POST', body: 'hi', headers: { 'content-type': 'text/plain' } });
  const seen = JSON.parse(
    await (
      await client.request(moved(303, '/headers'), {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'hi',
        maxRedirects: 3,
      })
    ).text(),
  ) as Seen;
  t.like(seen, { method: 'GET', body: '' });
  t.is(seen.headers['content-type'], undefined);
});

test.serial('a followed redirect keeps authorization on its origin only, and stops at maxRedirects', async (t) => {
  const other = http.createServer((req, res) => res.writeHead(200).end(JSON.stringify({ headers: req.headers })));
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    other.closeAllConnections();
    other.close();
  });
  const elsewhere = `http://127.0.0.1:${(other.address() as AddressInfo).port}/`;
  const headers = { authorization: 'Bearer secret', 'x-kept': 'yes' };
  const same = JSON.parse(await (await client.request(moved(302, '/headers'), { method: 'GET', headers, maxRedirects: 1 })).text()) as Seen;
  t.is(same.headers.authorization, 'Bearer secret');
  const cross = JSON.parse(await (await client.request(moved(301, elsewhere), { method: 'GET', headers, maxRedirects: 1 })).text()) as Seen;
  t.is(cross.headers.authorization, undefined);
  t.is(cross.headers['x-kept'], 'yes');
  const twice = await client.request(moved(302, moved(302, '/headers').href), { method: 'GET', headers: {}, maxRedirects: 1 });
  t.is(twice.status, 302);
  twice.destroy();
});

/** A raw server that answers each connection's first request and resets the connection when a second one arrives on it. */
async function resetOnReuse(): Promise<{ url: URL; requests: () => number; connections: () => number; close: () => void }> {
  let requests = 0;
  let connections = 0;
  const raw = net.createServer((socket) => {
    connections++;
    let answered = false;
    socket.on('data', () => {
      requests++;
      if (answered) {
        socket.resetAndDestroy();
        return;
      }
      answered = true;
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
    });
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  return {
    url: new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}/x`),
    requests: () => requests,
    connections: () => connections,
    close: () => raw.close(),
  };
}

test('a reset on a reused keep-alive socket before any answer is sent once more on a fresh socket', async (t) => {
  const server = await resetOnReuse();
  const client = createHttpClient({ maxSockets: 1 });
  t.teardown(() => (client.close(), server.close()));
  t.is(await (await client.request(server.url, { method: 'POST', headers: {}, body: 'a' })).text(), 'ok');
  const again = await client.request(server.url, { method: 'POST', headers: {}, body: 'b' });
  t.is(await again.text(), 'ok');
  t.is(server.requests(), 3, 'the first, the one reset, and its resend');
  t.is(server.connections(), 2);
});

test('a reset on a fresh socket is not sent again', async (t) => {
  const raw = net.createServer((socket) => socket.on('data', () => socket.resetAndDestroy()));
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  let requests = 0;
  raw.on('connection', () => requests++);
  const client = createHttpClient({ maxSockets: 1 });
  t.teardown(() => (client.close(), raw.close()));
  const url = new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}/x`);
  await t.throwsAsync(client.request(url, { method: 'POST', headers: {}, body: 'a' }), { code: 'ECONNRESET' });
  t.is(requests, 1);
});
