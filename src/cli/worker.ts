import { parseArgs } from 'node:util';
import { readWorkerConfig, runWorker, WorkerConfigError } from '../cloud-worker/index.js';
import type { Logger } from '../logging/index.js';
import { UsageError, UsageErrorFor } from './usage.js';

/**
 * `worker [--max-jobs N]`: the reference cloud worker, configured by the README's CYNODE_*
 * variables. SIGTERM/SIGINT stop polling and let running jobs finish.
 */
export async function runWorkerCommand(env: NodeJS.ProcessEnv, logger: Logger, args: string[]): Promise<number> {
  let maxJobs: number | undefined;
  try {
    const { values } = parseArgs({ args, options: { 'max-jobs': { type: 'string' } } });
    if (values['max-jobs'] !== undefined) {
      maxJobs = Number(values['max-jobs']);
      if (!Number.isInteger(maxJobs) || maxJobs < 1) throw new UsageError('--max-jobs takes a positive integer');
    }
  } catch (err) {
    throw err instanceof UsageError ? err : UsageErrorFor(err);
  }
  let config;
  try {
    config = readWorkerConfig(env);
  } catch (err) {
    if (err instanceof WorkerConfigError) throw new UsageError(err.message);
    throw err;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await runWorker(config, logger, { ...(maxJobs !== undefined && { maxJobs }), signal: stop.signal });
  return 0;
}
