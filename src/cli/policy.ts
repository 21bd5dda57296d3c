import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Config } from '../config/index.js';
import { ensureLocalSigningKey } from '../policy/dev-signing-key.js';
import { buildBundle, REQUIRED_ENTRYPOINTS, testPolicies } from '../policy/index.js';
import { runPolicyEval } from './policy-eval.js';
import { runPolicyReplay } from './policy-replay.js';
import { UsageError } from './usage.js';

/**
 * `policy build|test`: the real OPA toolchain over the configured policies folder. OPA's
 * own messages reach the terminal unchanged; a failure exits with OPA's status, no stack.
 * `policy eval` and `policy replay` decide on a bundle with the gateway's engine.
 */
export async function runPolicy(config: Config, args: string[]): Promise<number> {
  if (args[0] === 'eval') return runPolicyEval(config, args.slice(1));
  if (args[0] === 'replay') return runPolicyReplay(config, args.slice(1));
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      revision: { type: 'string' },
      dir: { type: 'string' },
      unsigned: { type: 'boolean', default: false },
    },
  });
  const policiesDir = values.dir ? resolve(values.dir) : config.policy.policiesDir;
  switch (positionals[0]) {
    case 'build': {
      const out = values.out ? resolve(values.out) : config.policy.bundle;
      if (/^https?:/.test(out)) throw new UsageError('the configured bundle is a URL; pass --out FILE to build');
      const signing = values.unsigned ? undefined : signingSetup(config);
      const built = await buildBundle({
        policiesDir,
        out,
        entrypoints: REQUIRED_ENTRYPOINTS,
        ...(values.revision && { revision: values.revision }),
        ...(signing && { signing }),
      });
      console.error(
        `policy bundle ${built.out} (revision ${built.revision}, ${signing ? `signed by key '${signing.keyId}'` : 'unsigned'})`,
      );
      return 0;
    }
    case 'test': {
      const { coverage } = await testPolicies({ policiesDir, coverageThreshold: config.policy.coverageThreshold });
      console.error(`policy coverage ${coverage.toFixed(1)}% (threshold ${config.policy.coverageThreshold}%)`);
      return 0;
    }
    default:
      throw new UsageError(`policy takes build, test, eval or replay, not '${positionals[0] ?? ''}'`);
  }
}

// The signing key from config; on a fresh checkout a local key pair is created first, with
// its public half in the verification keys file the gateway reads.
function signingSetup(config: Config): { keyFile: string; algorithm: string; keyId: string } | undefined {
  const { signingKeyFile, verificationKeysFile, signingAlgorithm, signingKeyId } = config.policy;
  if (!signingKeyFile) return undefined;
  if (
    verificationKeysFile &&
    ensureLocalSigningKey({ keyFile: signingKeyFile, keysFile: verificationKeysFile, keyId: signingKeyId, algorithm: signingAlgorithm })
  ) {
    console.error(`created a local bundle signing key ${signingKeyFile} and its verification entry in ${verificationKeysFile}`);
  }
  return { keyFile: signingKeyFile, algorithm: signingAlgorithm, keyId: signingKeyId };
}
