import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose';
import type { Middleware } from 'koa';
import { GatewayError } from '../errors/index.js';
import { checkGatewayUrl, type GatewayTransport, httpTlsOf } from '../lib/gateway-transport.js';
import { createHttpClient, type HttpClient } from '../lib/http-client.js';
import type { Logger } from '../logging/index.js';
import {
  type Bundle,
  type BundleSource,
  createPolicyEngine,
  type Decision,
  type PolicyEngine,
  REQUIRED_ENTRYPOINTS,
  pollBundleUrl,
  watchBundleFile,
} from '../policy/index.js';
import { BUNDLE_NAME } from '../policy/entrypoints.js';
import { createReplayCache, FORWARD_TOKEN_HEADER, type VerifiedForward, verifyForwardToken } from './forward-token.js';

/** Configuration of a target service's final gate. */
export interface FinalGateOptions {
  /** The gateway's control-plane URL, e.g. `http://gateway:12082`. */
  gatewayUrl: string;
  /** This service's name; forward tokens must be addressed to it. */
  audience: string;
  /** The `iss` of forward tokens (the gateway's issuer); defaults to `cynode-gateway`. */
  issuer?: string;
  /** Where the bundle comes from: defaults to the gateway's bundle service; a file path or URL. */
  bundle?: string;
  /** Bearer token for the bundle service. */
  bundleToken: string | null;
  /** Checks each bundle before use (signature verification); throw a BundleError to refuse. */
  verify?: (bundle: Bundle) => void | Promise<void>;
  /** Entrypoints this service needs; defaults to all of the gateway's. */
  entrypoints?: readonly string[];
  logger: Logger;
  pollMinDelayMs?: number;
  pollMaxDelayMs?: number;
  longPollTimeoutMs?: number;
  maxTokenTtlMs?: number;
  /** Override key resolution (tests); defaults to the gateway's `/.well-known/jwks.json`. */
  keys?: JWTVerifyGetKey;
  /**
   * How the gateway is reached: the CAs trusted for its https certificate (`CYNODE_CA_FILE`,
   * see `readGatewayTransport`), and whether plain http to a host that is not loopback is
   * allowed (`CYNODE_ALLOW_INSECURE`). By default the system's CAs, and plain http only on loopback.
   */
  transport?: GatewayTransport;
}

/** The outcome of a final-gate check that allowed the request. */
export interface FinalGateResult {
  forward: VerifiedForward;
  decision: Decision;
  /** The revision this service decided with (may differ from the gateway's: skew). */
  revision: string;
}

/** A target service's own policy gate. */
export interface FinalGate {
  engine: PolicyEngine;
  /** Resolves after the first bundle load attempt. */
  ready: Promise<void>;
  /** Verifies the forward token for `body`, re-evaluates its entrypoint on this service's bundle, and throws unless allowed. */
  check(token: string | undefined, body: Buffer | string): Promise<FinalGateResult>;
  /**
   * Only verifies the forward token for `body` (the request came from the gateway, unchanged,
   * once): for requests that act on nothing, such as an MCP server's `initialize` or `tools/list`.
   */
  verify(token: string | undefined, body: Buffer | string): Promise<VerifiedForward>;
  /** Koa middleware: reads the raw body (≤ maxBodyBytes) into `ctx.state.rawBody`, runs `check`, sets `ctx.state.finalGate`. */
  middleware(maxBodyBytes?: number): Middleware;
  close(): void;
}

/**
 * Creates the final gate a target service runs: it pulls and verifies the gateway's bundle
 * (or its own), trusts nothing the caller says, and denies on its own authority — so a
 * request the gateway wrongly let through is still stopped here.
 */
export function createFinalGate(options: FinalGateOptions): FinalGate {
  const log = options.logger.child({ component: 'final-gate', audience: options.audience });
  const engine = createPolicyEngine({
    logger: options.logger,
    required: options.entrypoints ?? REQUIRED_ENTRYPOINTS,
    ...(options.verify && { verify: options.verify }),
  });
  const { source, keys, http } = connectToGateway(options, engine);
  const replay = createReplayCache();
  const verifyOptions = {
    keys,
    issuer: options.issuer ?? 'cynode-gateway',
    audience: options.audience,
    replay,
    maxTtlMs: options.maxTokenTtlMs ?? 120_000,
  };

  const check = async (token: string | undefined, body: Buffer | string): Promise<FinalGateResult> => {
    const forward = await verifyForwardToken(token, body, verifyOptions);
    const { decision, revision } = engine.evaluate(forward.entrypoint, forward.input);
    if (revision !== forward.revision) {
      log.warn({ gatewayRevision: forward.revision, revision, entrypoint: forward.entrypoint }, 'bundle revision differs from the gateway');
    }
    if (!decision.allow) {
      throw new GatewayError('policy_denied', 'denied by the final gate', { reasons: decision.reasons, revision });
    }
    return { forward, decision, revision };
  };

  return {
    engine,
    ready: source.ready,
    check,
    verify: (token, body) => verifyForwardToken(token, body, verifyOptions),
    middleware(maxBodyBytes = 1_048_576) {
      return async (ctx, next) => {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > maxBodyBytes) throw new GatewayError('payload_too_large', `the body exceeds ${maxBodyBytes} bytes`);
          chunks.push(chunk);
        }
        const rawBody = Buffer.concat(chunks);
        ctx.state.rawBody = rawBody;
        ctx.state.finalGate = await check(ctx.get(FORWARD_TOKEN_HEADER) || undefined, rawBody);
        await next();
      };
    },
    close: () => {
      source.close();
      http.close();
    },
  };
}

/**
 * The gateway's bundle source and key set for a final gate, over one client that trusts the
 * transport's CAs. Plain http to a gateway that is not loopback is refused before anything
 * connects, unless the transport allows it.
 */
function connectToGateway(
  options: FinalGateOptions,
  engine: PolicyEngine,
): { source: BundleSource; keys: JWTVerifyGetKey; http: HttpClient } {
  const base = options.gatewayUrl.replace(/\/+$/, '');
  const transport = options.transport ?? { allowInsecure: false };
  const bundle = options.bundle ?? `${base}/v1/bundles/${BUNDLE_NAME}`;
  const remote = /^https?:\/\//.test(bundle);
  // Checked before anything connects: a bundle URL and the key set both come from the gateway.
  if (remote) checkGatewayUrl(bundle, transport.allowInsecure, 'the bundle URL');
  if (!options.keys) checkGatewayUrl(base, transport.allowInsecure, 'the gateway URL');
  const http = createHttpClient({ maxSockets: 4, tls: httpTlsOf(transport) });
  const sourceOptions = {
    engine,
    logger: options.logger,
    token: options.bundleToken,
    minDelayMs: options.pollMinDelayMs ?? 10_000,
    maxDelayMs: options.pollMaxDelayMs ?? 20_000,
    longPollTimeoutMs: options.longPollTimeoutMs ?? 0,
  };
  const source = remote ? pollBundleUrl(bundle, { ...sourceOptions, http }) : watchBundleFile(bundle, sourceOptions);
  // jose's remote key set bounds the fetch and adds the cooldown and caching of the key set;
  // its requests go through the shared client so they trust the same CAs as the bundle pulls.
  const keys =
    options.keys ??
    createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`), { cooldownDuration: 5_000, [customFetch]: fetchOver(http) });
  return { source, keys, http };
}

/** A fetch for jose over the shared client: GET only, no redirects followed (jose asks for `manual`). */
function fetchOver(http: HttpClient) {
  return async (url: string, init: { headers: Headers; signal: AbortSignal }): Promise<Response> => {
    const res = await http.request(new URL(url), { method: 'GET', headers: Object.fromEntries(init.headers), signal: init.signal });
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) headers.set(name, String(value));
    const body = await res.bytes();
    // A Response with a null-body status (204, 304) must not be given one.
    return new Response(res.status === 204 || res.status === 304 ? null : body, { status: res.status, headers });
  };
}
