/** The signed-in user, as `GET /console/session` answers. */
export interface Session {
  principal: { kind: 'admin' | 'reader'; id: string };
  csrf: string;
  expires_at: string;
}

/** A refused API call: its HTTP status and the gateway's stable error code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  /** The route does not exist on this gateway (not a missing record, which has its own code). */
  get routeMissing(): boolean {
    return this.status === 404 && this.code === 'not_found';
  }
}

let csrf = '';

/** Remembers the session's CSRF token; every write sends it. */
export function useSession(session: Session | undefined): void {
  csrf = session?.csrf ?? '';
}

/**
 * Calls the admin API with the session cookie (same origin only). JSON bodies are sent as
 * JSON, a Blob as-is with its type; every method but GET carries the CSRF header.
 */
export async function api<T = Record<string, unknown>>(method: string, path: string, body?: unknown, type?: string): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') headers['x-cynode-csrf'] = csrf;
  let payload: BodyInit | undefined;
  if (body instanceof Blob) {
    payload = body;
    headers['content-type'] = type ?? 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 204) return undefined as T;
  const answer = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    const error = (answer.error ?? {}) as { code?: string; message?: string };
    throw new ApiError(res.status, error.code ?? 'error', error.message ?? `HTTP ${res.status}`);
  }
  return answer as T;
}

/** A query string from the fields that are set. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
