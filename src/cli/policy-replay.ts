import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { resolveAdminToken } from '../auth/index.js';
import type { Config } from '../config/index.js';
import { isGatewayError } from '../errors/index.js';
import { errorMessage } from '../lib/error-message.js';
import { StartupError } from '../lib/startup-error.js';
import { BundleError } from '../policy/index.js';
import { createReplayService, DEFAULT_SINCE, flipsOf, parseLimit, parseSince, type ReplayReport } from '../replay/index.js';
import { openDatabase } from '../storage/index.js';
import { readBundle } from './policy-eval.js';
import { printReport } from './replay-report.js';
import { UsageError, UsageErrorFor } from './usage.js';

/** What `policy replay` was asked. */
interface ReplayArgs {
  bundle: string;
  since: string;
  entrypoint?: string;
  limit?: string;
  url?: string;
  maxFlips?: number;
  json: boolean;
}

/**
 * `policy replay --bundle CANDIDATE [--since 24h] [--entrypoint E] [--limit N] [--url GATEWAY]
 * [--max-flips N] [--json]`: re-evaluates recorded decisions against a candidate bundle and
 * reports what it would decide differently. Without `--url` it reads the configured database
 * itself; with it, it asks a running gateway (`POST /v1/policy/replay`) with the read-only or
 * admin token. Exits 1 when more decisions flip than `--max-flips`, so CI can gate a Rego change.
 */
export async function runPolicyReplay(config: Config, args: string[]): Promise<number> {
  const asked = parseReplayArgs(args);
  const archive = readBundle(resolve(asked.bundle));
  const report = asked.url ? await replayRemote(config, asked, archive) : await replayLocal(config, asked, archive);
  printReport(report, asked.json);
  const flips = flipsOf(report);
  if (asked.maxFlips !== undefined && flips > asked.maxFlips) {
    console.error(`cynode-gateway: ${flips} decisions flip, more than --max-flips ${asked.maxFlips}`);
    return 1;
  }
  return 0;
}

function parseReplayArgs(args: string[]): ReplayArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        bundle: { type: 'string' },
        since: { type: 'string', default: DEFAULT_SINCE },
        entrypoint: { type: 'string' },
        limit: { type: 'string' },
        url: { type: 'string' },
        'max-flips': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    throw UsageErrorFor(err);
  }
  if (!values.bundle) throw new UsageError('policy replay needs --bundle CANDIDATE.tar.gz');
  const maxFlips = values['max-flips'] === undefined ? undefined : Number(values['max-flips']);
  if (maxFlips !== undefined && (!Number.isInteger(maxFlips) || maxFlips < 0)) {
    throw new UsageError('--max-flips takes a non-negative integer');
  }
  // Checked here too, so a typo is a usage error before any bundle or database is touched.
  asUsage(() => parseSince(values.since));
  asUsage(() => parseLimit(values.limit));
  return {
    bundle: values.bundle,
    since: values.since,
    json: values.json,
    ...(values.entrypoint !== undefined && { entrypoint: values.entrypoint }),
    ...(values.limit !== undefined && { limit: values.limit }),
    ...(values.url !== undefined && { url: values.url }),
    ...(maxFlips !== undefined && { maxFlips }),
  };
}

async function replayLocal(config: Config, asked: ReplayArgs, archive: Buffer): Promise<ReplayReport> {
  const quiet = pino({ level: 'silent' });
  const db = await openDatabase(config.database, quiet);
  try {
    const service = createReplayService({ knex: db.knex, policy: config.policy, logger: quiet });
    return await service.replay(archive, {
      since: parseSince(asked.since),
      limit: parseLimit(asked.limit),
      ...(asked.entrypoint !== undefined && { entrypoint: asked.entrypoint }),
    });
  } catch (err) {
    if (err instanceof BundleError) throw new BundleError(err.code, `candidate refused (${err.code}): ${err.message}`);
    if (isGatewayError(err) && err.code === 'entrypoint_unknown') throw new UsageError(err.message);
    throw err;
  } finally {
    await db.close();
  }
}

async function replayRemote(config: Config, asked: ReplayArgs, archive: Buffer): Promise<ReplayReport> {
  const query = new URLSearchParams({ since: asked.since });
  if (asked.entrypoint !== undefined) query.set('entrypoint', asked.entrypoint);
  if (asked.limit !== undefined) query.set('limit', asked.limit);
  const url = `${asked.url!.replace(/\/+$/, '')}/v1/policy/replay?${query.toString()}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokenOf(config)}`, 'content-type': 'application/gzip' },
      body: archive,
    });
  } catch (err) {
    throw new StartupError(`cannot reach the gateway at ${asked.url}: ${errorMessage((err as Error).cause ?? err)}`);
  }
  const answer = (await res.json().catch(() => null)) as (ReplayReport & { error?: { code: string; message: string } }) | null;
  if (!res.ok || !answer) throw new StartupError(`${answer?.error?.code ?? res.status}: ${answer?.error?.message ?? res.statusText}`);
  return answer;
}

// Replay only reads, so the read-only token is preferred when both are set.
function tokenOf(config: Config): string {
  if (config.auth.readerToken) return config.auth.readerToken;
  if (!config.auth.adminToken && !existsSync(config.auth.adminTokenFile)) {
    throw new StartupError('no token: set CYNODE_READER_TOKEN or CYNODE_ADMIN_TOKEN to replay on a gateway');
  }
  return resolveAdminToken(config.auth, pino({ level: 'silent' }));
}

function asUsage(check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}
