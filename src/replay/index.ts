export { type Candidate, loadCandidate } from './candidate.js';
export { classify, type EntrypointReport, type ReplaySample, type Verdict } from './compare.js';
export { DEFAULT_LIMIT, DEFAULT_SINCE, MAX_LIMIT, parseLimit, parseSince } from './query.js';
export { REPLAY_ROUTES, type ReplayRouteDeps } from './routes.js';
export {
  createReplayService,
  flipsOf,
  MAX_SAMPLES,
  replayBatches,
  type ReplayQuery,
  type ReplayReport,
  type ReplayService,
} from './service.js';
