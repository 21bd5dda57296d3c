import { existsSync } from 'node:fs';
import type { Config } from '../config/index.js';
import { loadVerificationKeysFile, verifyBundleSignature } from './bundle-signature.js';
import type { Bundle } from './bundle.js';
import { checkBuiltins } from './builtins.js';
import type { PolicyEngineDeps } from './engine.js';
import { BundleError } from './errors.js';

/** What decides whether a bundle's signature must verify. */
export type SignaturePolicy = Pick<Config['policy'], 'allowUnsigned' | 'verificationKeysFile'>;

/**
 * The signature check every bundle passes before activation. Keys are read at each
 * activation, so a rotated keys file applies to the next bundle without a restart.
 * Signed bundles are required unless `allowUnsigned`; even then, a signature that is present
 * must verify when keys are configured — a bad signature is never ignored.
 */
export function createSignatureCheck(policy: SignaturePolicy): (bundle: Bundle) => Promise<void> {
  return async (bundle) => {
    const file = policy.verificationKeysFile;
    const haveKeys = file !== null && existsSync(file);
    if (policy.allowUnsigned && (!bundle.files.has('.signatures.json') || !haveKeys)) return;
    if (!haveKeys) {
      throw new BundleError(
        'signature_key_unknown',
        `no bundle verification keys (${file ?? 'policy.verificationKeysFile is null'}); configure keys or allow unsigned bundles`,
      );
    }
    let keys;
    try {
      keys = await loadVerificationKeysFile(file);
    } catch (err) {
      throw new BundleError('signature_key_unknown', `verification keys ${file}: ${(err as Error).message}`);
    }
    await verifyBundleSignature(bundle.files, keys);
  };
}

/** The checks the gateway's engine runs on every bundle, from config. */
export function createBundleChecks(policy: Config['policy']): Pick<PolicyEngineDeps, 'verify' | 'inspect'> {
  return { verify: createSignatureCheck(policy), inspect: checkBuiltins };
}
