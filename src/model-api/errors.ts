import type { ErrorShape, Refusal } from '../server/route.js';

// The status is always the gateway's for the code (one mapping, in errors/codes.ts): an SDK
// raises the exception class of that status, and the code says exactly what happened.

const reasonsOf = (r: Refusal) => (Array.isArray(r.details?.reasons) ? { reasons: r.details.reasons as unknown[] } : {});

/** OpenAI's error `type` for a status, as its API uses them. */
function openAiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'insufficient_quota';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

/** OpenAI's error shape, `{error: {message, type, code, param}}`, with the gateway's stable code as `code`. */
export const openAiErrorShape: ErrorShape = (r) => ({
  status: r.status,
  body: { error: { message: r.message, type: openAiType(r.status), code: r.code, param: null, ...reasonsOf(r) } },
});

/** Anthropic's error shape, `{type: "error", error: {type, message}}`, with the gateway's stable code as the error's `type`. */
export const anthropicErrorShape: ErrorShape = (r) => ({
  status: r.status,
  body: { type: 'error', error: { type: r.code, message: r.message, ...reasonsOf(r) } },
});
