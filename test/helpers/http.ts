import { createServer } from 'node:net';
import { TEST_ADMIN_TOKEN } from './config.js';

/** A JSON answer, loosely typed for assertions. */
export interface Answer<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

/** Options of one request. */
export interface CallOptions {
  method?: string;
  /** Bearer token; defaults to the test admin token, `null` sends none. */
  token?: string | null;
  json?: unknown;
  body?: string | Buffer;
  headers?: Record<string, string>;
}

/** One HTTP request to a test gateway, answer parsed as JSON when it is JSON. */
export async function call<T = Record<string, unknown>>(base: string, path: string, options: CallOptions = {}): Promise<Answer<T>> {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? TEST_ADMIN_TOKEN : options.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | Buffer | undefined = options.body;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${base}${path}`, { method: options.method ?? (body === undefined ? 'GET' : 'POST'), headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text) parsed = JSON.parse(text);
  return { status: res.status, body: parsed as T, headers: res.headers };
}

/** Polls `check` until it returns true or `ms` pass; returns how long it took, or throws. */
export async function eventually(check: () => Promise<boolean> | boolean, ms = 5000, stepMs = 25): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (await check()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`condition not met within ${ms} ms`);
}

/** A loopback port that was free a moment ago (for a server that must be named before it starts). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
