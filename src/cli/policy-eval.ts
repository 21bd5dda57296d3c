import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import type { Config } from '../config/index.js';
import { isGatewayError } from '../errors/index.js';
import { parseJsonBody } from '../server/json-body.js';
import { loadCandidate } from '../replay/index.js';
import { StartupError } from '../lib/startup-error.js';
import { readStdin } from './stdin.js';
import { UsageError, UsageErrorFor } from './usage.js';

/**
 * `policy eval --entrypoint E [--input FILE|-] [--bundle FILE]`: one decision, made locally on
 * the engine the gateway runs (the same bundle checks: signatures, builtins, default deny),
 * printed as `POST /v1/data/{path}` answers it (one line of JSON). Nothing is recorded, so the answer has no
 * `decision_id`. The input is the input document itself (standard input by default); runtime
 * settings such as the kill switch are at their defaults.
 */
export async function runPolicyEval(config: Config, args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { entrypoint: { type: 'string' }, input: { type: 'string' }, bundle: { type: 'string' } } }));
  } catch (err) {
    throw UsageErrorFor(err);
  }
  if (!values.entrypoint) throw new UsageError('policy eval needs --entrypoint (e.g. cynode/register/decision)');
  const entrypoint = values.entrypoint.replace(/^\/+|\/+$/g, '');
  const bundle = values.bundle ? resolve(values.bundle) : config.policy.bundle;
  if (/^https?:/.test(bundle)) throw new UsageError('the configured bundle is a URL; pass --bundle FILE');
  const input = parseInput(values.input === undefined || values.input === '-' ? await readStdin() : readInputFile(values.input));
  const { engine, info } = await loadCandidate(readBundle(bundle), config.policy, pino({ level: 'silent' }));
  if (!info.entrypoints.includes(entrypoint)) {
    throw new UsageError(`'${entrypoint}' is not an entrypoint of bundle ${info.revision} (${info.entrypoints.join(', ')})`);
  }
  try {
    console.log(JSON.stringify({ result: engine.evaluate(entrypoint, input).decision }));
  } catch (err) {
    if (!isGatewayError(err)) throw err;
    console.error(`cynode-gateway: ${err.code}: ${err.message}`);
    return 1;
  }
  return 0;
}

/** A bundle file's bytes; a missing file is a failure that names it. */
export function readBundle(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new StartupError(`cannot read bundle ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function readInputFile(file: string): Buffer {
  try {
    return readFileSync(resolve(file));
  } catch (err) {
    throw new UsageError(`cannot read input ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

// The same door as the HTTP body: JSON the gateway could store and evaluate.
function parseInput(raw: Buffer): unknown {
  try {
    return parseJsonBody(raw);
  } catch (err) {
    throw new UsageError(`the input is not usable JSON: ${(err as Error).message}`);
  }
}
