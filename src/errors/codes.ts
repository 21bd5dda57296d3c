/**
 * The closed set of stable error codes the gateway answers with, and the HTTP status of
 * each. Clients and tests match on the code, never on the message; adding a code is an API
 * change, so it happens here and only here.
 */
export const ERROR_STATUS = {
  bad_request: 400,
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  forward_token_invalid: 401,
  forward_token_replayed: 401,
  forward_body_mismatch: 401,
  policy_denied: 403,
  setting_unknown: 404,
  setting_invalid: 422,
  entrypoint_unknown: 404,
  rate_limited: 429,
  psk_invalid: 401,
  psk_not_found: 404,
  token_invalid: 401,
  token_expired: 401,
  session_replaced: 401,
  node_id_taken: 409,
  capability_invalid: 422,
  worker_not_found: 404,
  job_invalid: 422,
  job_not_found: 404,
  job_not_owned: 403,
  job_finished: 409,
  lease_superseded: 409,
  result_conflict: 409,
  idempotency_key_required: 400,
  idempotency_in_flight: 409,
  idempotency_key_reused: 422,
  preference_unknown: 404,
  preference_invalid: 422,
  credential_not_found: 404,
  credential_invalid: 422,
  credential_exists: 409,
  credential_disabled: 403,
  credential_expired: 403,
  vault_unavailable: 503,
  provider_error: 502,
  provider_auth_failed: 502,
  provider_bad_request: 422,
  provider_rate_limited: 429,
  provider_timeout: 504,
  provider_stream_interrupted: 502,
  provider_unreachable: 502,
  budget_exceeded: 402,
  budget_missing: 402,
  budget_invalid: 422,
  budget_not_found: 404,
  credential_missing: 403,
  job_not_leased: 403,
  egress_unavailable: 503,
  audit_unavailable: 503,
  internal: 500,
  not_ready: 503,
  database_unavailable: 503,
  bundle_unavailable: 503,
  policy_evaluation_failed: 503,
  decision_log_unavailable: 503,
} as const satisfies Record<string, number>;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** The HTTP status for an error code. */
export function statusOf(code: ErrorCode): number {
  return ERROR_STATUS[code];
}
