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
  request_timeout: 408,
  headers_too_large: 431,
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
  session_ended: 401,
  node_quarantined: 403,
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
  upstream_error: 502,
  // The caller closed the connection before the answer ended (nginx's 499; the audit records it).
  client_closed: 499,
  upstream_timeout: 504,
  upstream_unavailable: 502,
  internal: 500,
  not_ready: 503,
  database_unavailable: 503,
  bundle_unavailable: 503,
  policy_evaluation_failed: 503,
  decision_log_unavailable: 503,
  // A candidate bundle (policy replay) refused by the checks every bundle passes: the code says which.
  bundle_unreadable: 422,
  bundle_malformed: 422,
  manifest_invalid: 422,
  data_invalid: 422,
  wasm_invalid: 422,
  entrypoint_missing: 422,
  bundle_not_default_deny: 422,
  builtin_not_supported: 422,
  signature_missing: 422,
  signature_invalid: 422,
  signature_key_unknown: 422,
  signature_algorithm_mismatch: 422,
  signature_files_mismatch: 422,
  signature_hash_mismatch: 422,
} as const satisfies Record<string, number>;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** Whether `code` is one of the stable codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_STATUS, code);
}

/** The HTTP status for an error code. */
export function statusOf(code: ErrorCode): number {
  return ERROR_STATUS[code];
}
