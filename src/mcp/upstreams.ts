import { randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ErrorCode, McpError, ResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { GatewayError } from '../errors/index.js';
import { canonicalJson } from '../lib/canonical-json.js';
import { errorMessage } from '../lib/error-message.js';
import { createHttpClient, type HttpClient, type HttpResponse, HttpTimeoutError, HttpTooLargeError } from '../lib/http-client.js';
import { FORWARD_TOKEN_HEADER, signForwardToken } from '../final-gate/forward-token.js';
import type { KeyStore } from '../keys/index.js';

/**
 * An upstream MCP server from config: `name=http(s)://host/path`, or `name=stdio:command args`
 * for a local server the gateway starts itself. Nothing else is ever routed to.
 */
export type Upstream = { name: string; kind: 'http'; url: URL } | { name: string; kind: 'stdio'; command: string; args: string[] };

/** A tool of an upstream, as it described itself. */
export interface UpstreamTool {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
}

/** What calling an upstream needs: the signing key for forward tokens, and limits. */
export interface UpstreamClientDeps {
  keys: KeyStore;
  issuer: string;
  forwardTokenTtlMs: number;
  timeoutMs: number;
  maxResponseBytes: number;
  /** Environment of stdio upstreams, on top of the MCP SDK's safe defaults (PATH, HOME, ...). */
  stdioEnv: Record<string, string>;
}

/** Where a stdio upstream's forward token travels: the request's `_meta`, bound to the rest of it. */
export const STDIO_TOKEN_META = 'cynode/forward-token';

/**
 * The text a stdio request's forward token is bound to: method and params without `_meta`, as
 * canonical JSON (the server sees params re-parsed, so key order cannot be relied on).
 */
export function stdioBoundBody(method: string, params: Record<string, unknown> | undefined): string {
  const { _meta: _dropped, ...rest } = params ?? {};
  return canonicalJson({ method, params: rest });
}

/** The audience of forward tokens addressed to an upstream tool server. */
export const upstreamAudience = (name: string) => `mcp-upstream:${name}`;

/**
 * Sends one JSON-RPC request to an HTTP upstream (MCP Streamable HTTP, stateless), with a
 * forward token bound to the exact body. Answers in JSON or as server-sent events are both read.
 */
async function httpRequest(
  deps: UpstreamClientDeps,
  client: HttpClient,
  upstream: Extract<Upstream, { kind: 'http' }>,
  method: string,
  params: unknown,
  claims: ForwardClaimsIn,
): Promise<unknown> {
  const id = randomUUID();
  const body = JSON.stringify({ jsonrpc: '2.0', id, method, params });
  const token = await signForwardToken(
    deps.keys.current(),
    { issuer: deps.issuer, audience: upstreamAudience(upstream.name), ...claims },
    body,
    deps.forwardTokenTtlMs,
  );
  const { status, type, text } = await exchange(deps, client, upstream, body, token);
  return readAnswer(upstream, id, status, type, text);
}

/**
 * POSTs `body` to the upstream and reads its answer whole. No answer (or a quiet one) within
 * the tool timeout is `upstream_timeout`, an answer past the size cap `payload_too_large`, a
 * connection that fails before the answer `upstream_unavailable`.
 */
async function exchange(
  deps: UpstreamClientDeps,
  client: HttpClient,
  upstream: Extract<Upstream, { kind: 'http' }>,
  body: string,
  token: string,
): Promise<{ status: number; type: string; text: string }> {
  const timedOut = () => new GatewayError('upstream_timeout', `${upstream.name} did not answer within ${deps.timeoutMs} ms`);
  const post = () =>
    client.request(upstream.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-06-18',
        [FORWARD_TOKEN_HEADER]: token,
      },
      body,
      responseTimeoutMs: deps.timeoutMs,
      idleTimeoutMs: deps.timeoutMs,
      maxResponseBytes: deps.maxResponseBytes,
    });
  let res: HttpResponse;
  try {
    // A reset before any answer is most often a kept-alive connection the upstream closed as
    // the request left: sent once more, on a new connection. The same single-use token goes
    // with it, so a request the upstream did read is refused as a replay, never run twice.
    res = await post().catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') return post();
      throw err;
    });
  } catch (err) {
    if (err instanceof HttpTimeoutError) throw timedOut();
    throw new GatewayError(
      'upstream_unavailable',
      `${upstream.name} cannot be reached: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
    );
  }
  try {
    return { status: res.status, type: String(res.headers['content-type'] ?? ''), text: await res.text() };
  } catch (err) {
    if (err instanceof HttpTimeoutError) throw timedOut();
    if (err instanceof HttpTooLargeError)
      throw new GatewayError('payload_too_large', `${upstream.name} answered with more than ${deps.maxResponseBytes} bytes`);
    throw err;
  } finally {
    res.destroy();
  }
}

type JsonRpcAnswer = { id?: unknown; result?: unknown; error?: { code: number; message: string; data?: unknown } };

/**
 * The result of an HTTP upstream's answer to request `id`, read as JSON or as server-sent
 * events; a JSON-RPC error becomes `upstream_error` with the upstream's code and reasons.
 */
function readAnswer(upstream: Upstream, id: string, status: number, type: string, text: string): unknown {
  let message: JsonRpcAnswer | undefined;
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
  if (!message || (message.result === undefined && !message.error))
    throw new GatewayError('upstream_error', `${upstream.name} answered without a result (HTTP ${status})`);
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

/** Sends requests to upstreams; owns the stdio servers it starts. */
export interface UpstreamClient {
  /** One JSON-RPC request to an upstream, over HTTP or stdio, with a forward token bound to it. */
  request(upstream: Upstream, method: string, params: Record<string, unknown>, claims: ForwardClaimsIn): Promise<unknown>;
  /** Stops every stdio upstream it started and closes the connections to HTTP upstreams. */
  close(): Promise<void>;
}

type ForwardClaimsIn = { subject: string; entrypoint: string; input: unknown; revision: string };

/** The client the MCP gateway calls upstreams through: one keep-alive pool for HTTP, one process per stdio upstream. */
export function createUpstreamClient(deps: UpstreamClientDeps): UpstreamClient {
  const http = createHttpClient({ maxSockets: 256 });
  const stdioClients = new Map<string, Promise<Client>>();

  // The running client of a stdio upstream, started on first use and again after it exits.
  const stdioClient = (upstream: Extract<Upstream, { kind: 'stdio' }>): Promise<Client> => {
    let client = stdioClients.get(upstream.name);
    if (!client) {
      const transport = new StdioClientTransport({
        command: upstream.command,
        args: upstream.args,
        env: { ...getDefaultEnvironment(), ...deps.stdioEnv },
        stderr: 'inherit',
      });
      const c = new Client({ name: 'cynode-gateway', version: '1.0.0' });
      transport.onclose = () => stdioClients.delete(upstream.name);
      client = c.connect(transport, { timeout: deps.timeoutMs }).then(() => c);
      client.catch(() => stdioClients.delete(upstream.name));
      stdioClients.set(upstream.name, client);
    }
    return client;
  };

  const stdioRequest = async (
    upstream: Extract<Upstream, { kind: 'stdio' }>,
    method: string,
    params: Record<string, unknown>,
    claims: ForwardClaimsIn,
  ): Promise<unknown> => {
    const token = await signForwardToken(
      deps.keys.current(),
      { issuer: deps.issuer, audience: upstreamAudience(upstream.name), ...claims },
      stdioBoundBody(method, params),
      deps.forwardTokenTtlMs,
    );
    let client: Client;
    let result: unknown;
    try {
      client = await stdioClient(upstream);
    } catch (err) {
      throw new GatewayError('upstream_unavailable', `${upstream.name} could not be started: ${errorMessage(err).slice(0, 200)}`);
    }
    try {
      result = await client.request({ method, params: { ...params, _meta: { [STDIO_TOKEN_META]: token } } } as never, ResultSchema, {
        timeout: deps.timeoutMs,
      });
    } catch (err) {
      if (err instanceof McpError) {
        // The server died under this call: the next call starts a new one.
        if (err.code === ErrorCode.ConnectionClosed) stdioClients.delete(upstream.name);
        if (err.code === ErrorCode.RequestTimeout)
          throw new GatewayError('upstream_timeout', `${upstream.name} did not answer within ${deps.timeoutMs} ms`);
        const data = err.data as { code?: string; reasons?: string[] } | undefined;
        throw new GatewayError('upstream_error', `${upstream.name}: ${err.message.slice(0, 300)}`, {
          upstream_code: err.code,
          ...(typeof data?.code === 'string' && { upstream_error: data.code }),
          ...(Array.isArray(data?.reasons) && { reasons: data.reasons }),
        });
      }
      throw new GatewayError('upstream_unavailable', `${upstream.name} failed: ${errorMessage(err).slice(0, 200)}`);
    }
    // The SDK reads a stdio answer whole; what is passed on is bounded as over HTTP.
    if (Buffer.byteLength(JSON.stringify(result)) > deps.maxResponseBytes)
      throw new GatewayError('payload_too_large', `${upstream.name} answered with more than ${deps.maxResponseBytes} bytes`);
    return result;
  };

  return {
    request: (upstream, method, params, claims) =>
      upstream.kind === 'http' ? httpRequest(deps, http, upstream, method, params, claims) : stdioRequest(upstream, method, params, claims),
    async close() {
      http.close();
      const clients = [...stdioClients.values()];
      stdioClients.clear();
      await Promise.all(clients.map((c) => c.then((x) => x.close()).catch(() => undefined)));
    },
  };
}
