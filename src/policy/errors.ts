/** Why a bundle was refused; stable codes reported in status and logs. */
export type BundleErrorCode =
  | 'bundle_unreadable'
  | 'bundle_malformed'
  | 'manifest_invalid'
  | 'data_invalid'
  | 'wasm_invalid'
  | 'entrypoint_missing'
  | 'bundle_not_default_deny'
  | 'builtin_not_supported'
  | 'signature_missing'
  | 'signature_invalid'
  | 'signature_key_unknown'
  | 'signature_algorithm_mismatch'
  | 'signature_files_mismatch'
  | 'signature_hash_mismatch';

/**
 * A bundle that cannot be activated. The previous bundle (if any) stays active; the code
 * tells an operator which part of the bundle is wrong.
 */
export class BundleError extends Error {
  readonly code: BundleErrorCode;

  constructor(code: BundleErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BundleError';
    this.code = code;
  }
}
