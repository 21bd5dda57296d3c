import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { GatewayError } from '../errors/index.js';
import { FORWARD_TOKEN_HEADER, signForwardToken } from '../final-gate/forward-token.js';
import type { KeyStore } from '../keys/index.js';

/** An upstream MCP server from config: `name=url`. Nothing else is ever routed to. */
export interface Upstream {
  name: string;
  url: URL;
}

/** A tool of an upstream, as it described itself. */
export interface UpstreamTool {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
}

const NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** Parses `mcp.upstreams` (`name=url` entries); a bad entry stops the gateway at start. */
export function parseUpstreams(entries: readonly string[]): Upstream[] {
  const seen = new Set<string>();
  return entries.map((entry) => {
    const at = entry.indexOf('=');
    const name = entry.slice(0, at);
    const url = entry.slice(at + 1);
    if (at < 1 || !NAME.test(name) || !/^https?:\/\/\S+$/.test(url)) {
      throw new GatewayError('bad_request', `mcp.upstreams: '${entry}' must be name=http(s)://host/path with a lower-case name`);
    }
    if (seen.has(name)) throw new GatewayError('bad_request', `mcp.upstreams: '${name}' is listed twice`);
    seen.add(name);
    return { name, url: new URL(url) };
  });
}

/** What calling an upstream needs: the signing key for forward tokens, and limits. */
export interface UpstreamClientDeps {
  keys: KeyStore;
  issuer: string;
  forwardTokenTtlMs: number;
  timeoutMs: number;
  maxResponseBytes: number;
}

/** The audience of forward tokens addressed to an upstream tool server. */
export const upstreamAudience = (name: string) => `mcp-upstream:${name}`;

const agents = { http: new http.Agent({ keepAlive: true, maxSockets: 256 }), https: new https.Agent({ keepAlive: true, maxSockets: 256 }) };

/**
 * Sends one JSON-RPC request to an upstream (MCP Streamable HTTP, stateless), with a forward
 * token bound to the exact body. Answers in JSON or as server-sent events are both read.
 */
export async function upstreamRequest(
  deps: UpstreamClientDeps,
  upstream: Upstream,
  method: string,
  params: unknown,
  claims: { subject: string; entrypoint: string; input: unknown; revision: string },
): Promise<unknown> {
  const id = randomUUID();
  const body = JSON.stringify({ jsonrpc: '2.0', id, method, params });
  const token = await signForwardToken(deps.keys.current(), { issuer: deps.issuer, audience: upstreamAudience(upstream.name), ...claims }, body, deps.forwardTokenTtlMs);
  const secure = upstream.url.protocol === 'https:';
  const { status, type, text } = await new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
    const req = (secure ? https : http).request(
      upstream.url,
      {
        method: 'POST',
        agent: secure ? agents.https : agents.http,
        timeout: deps.timeoutMs,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-06-18',
          'content-length': Buffer.byteLength(body),
          [FORWARD_TOKEN_HEADER]: token,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > deps.maxResponseBytes) req.destroy(new GatewayError('payload_too_large', `${upstream.name} answered with more than ${deps.maxResponseBytes} bytes`));
          else chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 502, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new GatewayError('upstream_timeout', `${upstream.name} did not answer within ${deps.timeoutMs} ms`)));
    req.on('error', (err) => reject(err instanceof GatewayError ? err : new GatewayError('upstream_unavailable', `${upstream.name} cannot be reached: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    req.end(body);
  });
  let message: { id?: unknown; result?: unknown; error?: { code: number; message: string; data?: unknown } } | undefined;
  try {
    if (type.includes('text/event-stream')) {
      for (const block of text.split(/\r?\n\r?\n/)) {
        const data = block
          .split(/\r?\n/)
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        if (!data) continue;
        const parsed = JSON.parse(data) as typeof message;
        if (parsed?.id === id) message = parsed;
      }
    } else {
      message = JSON.parse(text) as typeof message;
    }
  } catch {
    throw new GatewayError('upstream_error', `${upstream.name} answered with something that is not JSON-RPC (HTTP ${status})`);
  }
  if (!message || (message.result === undefined && !message.error)) throw new GatewayError('upstream_error', `${upstream.name} answered without a result (HTTP ${status})`);
  if (message.error) {
    const data = message.error.data as { code?: string; reasons?: string[] } | undefined;
    throw new GatewayError('upstream_error', `${upstream.name}: ${String(message.error.message).slice(0, 300)}`, {
      upstream_code: message.error.code,
      ...(typeof data?.code === 'string' && { upstream_error: data.code }),
      ...(Array.isArray(data?.reasons) && { reasons: data.reasons }),
    });
  }
  return message.result;
}
