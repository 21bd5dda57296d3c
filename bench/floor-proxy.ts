/**
 * The floor of a Node.js gateway on this machine: the least any proxy written on `node:http`
 * can do for one chat call, as its own process. It reads the request body, parses it, swaps
 * in the provider key, sends it upstream on a keep-alive connection and passes the answer
 * back (parsed and serialized again when it is JSON, piped when it is a stream). No policy,
 * no database, no logging. `bench:egress-cpu` measures its CPU per call beside the gateway's
 * and Portkey's, so a target can be read against what the runtime itself costs here.
 * Prints its URL on the first line of stdout. Usage: floor-proxy.ts <upstream base URL> <key>.
 */
import http from 'node:http';

const [upstreamBase, key] = process.argv.slice(2);
if (!upstreamBase || !key) throw new Error('usage: floor-proxy.ts <upstream base URL> <key>');
const upstream = new URL('/v1/chat/completions', upstreamBase);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.stringify(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
    const out = http.request(
      upstream,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${key}` },
      },
      (up) => {
        const type = String(up.headers['content-type'] ?? '');
        if (type.includes('text/event-stream')) {
          res.writeHead(up.statusCode ?? 502, { 'content-type': type });
          up.pipe(res);
          return;
        }
        const answer: Buffer[] = [];
        up.on('data', (c: Buffer) => answer.push(c));
        up.on('end', () => {
          const text = JSON.stringify(JSON.parse(Buffer.concat(answer).toString('utf8')) as unknown);
          res.writeHead(up.statusCode ?? 502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
          res.end(text);
        });
      },
    );
    out.on('error', () => {
      res.writeHead(502).end();
    });
    out.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
