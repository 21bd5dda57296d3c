import type { Knex } from 'knex';
import type { Config } from '../config/index.js';
import { type DecisionEvent, scanDecisions } from '../decisions/log.js';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { type Candidate, loadCandidate } from './candidate.js';
import { emptyReport, type EntrypointReport, replayOne } from './compare.js';

/** Rows read per query while replaying. */
const BATCH_SIZE = 500;
/** Changed decisions listed per entrypoint. */
export const MAX_SAMPLES = 20;

/** Which recorded decisions to replay. */
export interface ReplayQuery {
  since: Date;
  entrypoint?: string;
  limit: number;
}

/** The answer of a replay: the candidate, the window, and what changed per entrypoint. */
export interface ReplayReport {
  candidate: { revision: string; digest: string };
  since: string;
  /** Recorded decisions read. */
  total: number;
  entrypoints: Record<string, EntrypointReport>;
}

/** Replays recorded decisions against a candidate bundle; reads the log, writes nothing. */
export interface ReplayService {
  /** Verifies and loads `archive` (a refused one throws its BundleError), then replays the window. */
  replay(archive: Buffer, query: ReplayQuery): Promise<ReplayReport>;
}

/** Dependencies of the replay service. */
export interface ReplayServiceDeps {
  knex: Knex;
  /** The gateway's bundle rules (signatures), applied to every candidate. */
  policy: Config['policy'];
  logger: Logger;
  /** Writes decisions still buffered, so a replay sees the ones made a moment ago. */
  flush?: () => Promise<void>;
}

/**
 * The replay service. Each candidate gets its own engine, so the engine deciding for the
 * gateway is never touched, and evaluating a candidate records nothing in the decision log:
 * it is a comparison, not a decision.
 */
export function createReplayService(deps: ReplayServiceDeps): ReplayService {
  const logger = deps.logger.child({ component: 'replay' });
  return {
    async replay(archive, query) {
      const candidate = await loadCandidate(archive, deps.policy, logger);
      if (query.entrypoint !== undefined && !candidate.info.entrypoints.includes(query.entrypoint)) {
        throw new GatewayError('entrypoint_unknown', `'${query.entrypoint}' is not an entrypoint of bundle ${candidate.info.revision}`);
      }
      await deps.flush?.();
      const started = performance.now();
      const batches = scanDecisions(deps.knex, {
        since: query.since,
        batchSize: BATCH_SIZE,
        limit: query.limit,
        ...(query.entrypoint !== undefined && { path: query.entrypoint }),
      });
      const report = await replayBatches(candidate, batches, query.since);
      logger.info({ revision: report.candidate.revision, total: report.total, ms: Math.round(performance.now() - started) }, 'replay done');
      return report;
    },
  };
}

/** Replays every decision of `batches` on the candidate's engine, one batch in memory at a time. */
export async function replayBatches(candidate: Candidate, batches: AsyncIterable<DecisionEvent[]>, since: Date): Promise<ReplayReport> {
  const entrypoints = new Map<string, EntrypointReport>();
  let total = 0;
  for await (const batch of batches) {
    for (const event of batch) {
      total += 1;
      let report = entrypoints.get(event.path);
      if (!report) entrypoints.set(event.path, (report = emptyReport()));
      replayOne(event, candidate.engine, report, MAX_SAMPLES);
    }
  }
  return {
    candidate: { revision: candidate.info.revision, digest: candidate.info.digest },
    since: since.toISOString(),
    total,
    entrypoints: Object.fromEntries(entrypoints),
  };
}

/** Decisions whose allow flipped either way: what `--max-flips` gates on. */
export function flipsOf(report: ReplayReport): number {
  return Object.values(report.entrypoints).reduce((n, e) => n + e.allow_to_deny + e.deny_to_allow, 0);
}
