export { type Bundle, type Manifest, MAX_BUNDLE_BYTES, parseBundle } from './bundle.js';
export {
  type ActiveBundle,
  type BundleStatus,
  createPolicyEngine,
  type Decision,
  type PolicyEngine,
  type PolicyEngineDeps,
} from './engine.js';
export { type Action, BUNDLE_NAME, type Entrypoint, ENTRYPOINTS, REQUIRED_ENTRYPOINTS } from './entrypoints.js';
export { BundleError, type BundleErrorCode } from './errors.js';
export { activateFromFile, BUNDLE_CHANNEL, type BundleSource, pollBundleUrl, startBundleSource, watchBundleFile } from './source.js';
export { buildBundle, opaBinary, policyRevision, testPolicies, ToolchainError } from './toolchain.js';
export {
  loadVerificationKeys,
  loadVerificationKeysFile,
  type VerificationKey,
  type VerificationKeys,
  verifyBundleSignature,
} from './bundle-signature.js';
export { createBundleChecks, createSignatureCheck, type SignaturePolicy } from './checks.js';
export { checkBuiltins, HOST_BUILTINS, hostBuiltinsOf } from './builtins.js';
