import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** One request a sink received: its headers, its size on the wire and its decoded JSON body. */
export interface Received {
  headers: IncomingHttpHeaders;
  bytes: number;
  body: unknown;
}

/** A loopback OPA management sink (Decision Log Service or Status API) for tests. */
export interface Sink {
  url: string;
  /** Requests answered 2xx, decoded (gunzipped when `content-encoding: gzip`). */
  accepted: Received[];
  /** How many requests were answered with a failure status. */
  refused: number;
  /** The status the next requests get (200 unless set). */
  status: number;
  /** Every event of every accepted decision-log upload, in arrival order. */
  events(): Record<string, any>[];
  close(): Promise<void>;
}

/** Starts a sink on 127.0.0.1 that records what it accepts and answers `sink.status`. */
export async function startSink(): Promise<Sink> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      if (sink.status >= 300) {
        sink.refused++;
        res.writeHead(sink.status).end();
        return;
      }
      const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
      sink.accepted.push({ headers: req.headers, bytes: raw.length, body: JSON.parse(text) });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sink: Sink = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/logs`,
    accepted: [],
    refused: 0,
    status: 200,
    events: () => sink.accepted.flatMap((r) => r.body as Record<string, any>[]),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return sink;
}
