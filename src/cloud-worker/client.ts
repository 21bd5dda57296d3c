import { STATUS_CODES } from 'node:http';
import { checkGatewayUrl, type GatewayTransport, httpTlsOf } from '../lib/gateway-transport.js';
import { createHttpClient, type HttpClient } from '../lib/http-client.js';

/** An answer from the gateway that was not a success: status and stable code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterMs: number | null,
  ) {
    super(message);
  }
}

/**
 * The Worker API over HTTP(S). Holds the worker JWT; on 401 it registers again (presenting the
 * old token, which proves it holds its node id) and repeats the call once. Over https it trusts
 * the transport's CAs and presents its client certificate; plain http to a host that is not
 * loopback is refused before any connection unless the transport allows it.
 */
export class WorkerClient {
  private token: string | undefined;
  private registering: Promise<void> | undefined;
  private readonly http: HttpClient;
  intervals = { poll_interval_ms: 2000, heartbeat_interval_ms: 10_000, lease_ttl_ms: 30_000 };

  constructor(
    private readonly baseUrl: string,
    private readonly psk: string,
    private readonly report: Record<string, unknown>,
    transport: GatewayTransport = { allowInsecure: false },
  ) {
    checkGatewayUrl(baseUrl, transport.allowInsecure, 'the gateway URL');
    this.http = createHttpClient({ maxSockets: 64, tls: httpTlsOf(transport) });
  }

  /** Ends the client's idle keep-alive connections. */
  close(): void {
    this.http.close();
  }

  /** `POST /register` with the PSK and the capability report. */
  async register(): Promise<void> {
    const res = await this.send('/register', {
      method: 'POST',
      headers: { 'x-cynode-psk': this.psk, ...(this.token && { authorization: `Bearer ${this.token}` }) },
      body: this.report,
    });
    const answer = res as { token: string } & WorkerClient['intervals'];
    this.token = answer.token;
    this.intervals = {
      poll_interval_ms: answer.poll_interval_ms,
      heartbeat_interval_ms: answer.heartbeat_interval_ms,
      lease_ttl_ms: answer.lease_ttl_ms,
    };
  }

  /** `POST /deregister`: ends the session so the node id is free at once (a clean exit); nothing to do when never registered. */
  async deregister(): Promise<void> {
    if (!this.token) return;
    await this.send('/deregister', {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}` },
      signal: AbortSignal.timeout(5000),
    });
    this.token = undefined;
  }

  /** An authenticated call; a 401 triggers one re-registration and one retry. */
  async call<T>(path: string, init: { method: string; body?: unknown; signal?: AbortSignal }): Promise<T> {
    if (!this.token) await this.refresh(undefined);
    const used = this.token;
    try {
      return (await this.send(path, { ...init, headers: { authorization: `Bearer ${used}` } })) as T;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
      await this.refresh(used);
      return (await this.send(path, { ...init, headers: { authorization: `Bearer ${this.token}` } })) as T;
    }
  }

  /**
   * Registers again, once for all the calls that found `stale` refused: concurrent calls
   * (heartbeat, poll, results) share one registration, and a call whose token was already
   * replaced simply uses the new one. Two registrations racing would replace each other's
   * session and lock the node out of its own id.
   */
  private refresh(stale: string | undefined): Promise<void> {
    if (this.token !== stale) return Promise.resolve();
    this.registering ??= this.register().finally(() => (this.registering = undefined));
    return this.registering;
  }

  private async send(
    path: string,
    init: { method: string; headers: Record<string, string>; body?: unknown; signal?: AbortSignal },
  ): Promise<unknown> {
    const res = await this.http.request(new URL(this.baseUrl + path), {
      method: init.method,
      headers: { ...init.headers, ...(init.body !== undefined && { 'content-type': 'application/json' }) },
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
      ...(init.signal && { signal: init.signal }),
    });
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (res.status < 200 || res.status > 299) {
      const e = (body as { error?: { code?: string; message?: string } } | null)?.error;
      const retryAfter = Number(res.headers['retry-after']);
      throw new ApiError(
        res.status,
        e?.code ?? `http_${res.status}`,
        e?.message ?? STATUS_CODES[res.status] ?? '',
        Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : null,
      );
    }
    return body;
  }
}
