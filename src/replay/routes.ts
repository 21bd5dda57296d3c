import { GatewayError } from '../errors/index.js';
import { BundleError, MAX_BUNDLE_BYTES } from '../policy/index.js';
import { readRaw } from '../server/json-body.js';
import { defineRoutes } from '../server/route.js';
import { DEFAULT_SINCE, parseLimit, parseSince } from './query.js';
import type { ReplayService } from './service.js';

/** Media types a candidate bundle may be sent as. */
const BUNDLE_TYPES = ['application/gzip', 'application/x-gzip', 'application/octet-stream'];

/** What the replay route needs: the service, and the request body limit every route keeps. */
export interface ReplayRouteDeps {
  replay: ReplayService;
  maxBodyBytes: number;
}

/**
 * `POST /v1/policy/replay` (reader): the candidate bundle as the raw body, replayed against
 * the recorded decisions of the window; a candidate the gateway would refuse to activate is
 * refused here with the same code (signature, manifest, entrypoints, default deny).
 */
export const REPLAY_ROUTES = defineRoutes<ReplayRouteDeps>([
  {
    method: 'post',
    path: '/v1/policy/replay',
    roles: ['control'],
    access: 'reader',
    summary: 'Replay recorded decisions against a candidate bundle (the gzip archive as the body); records nothing.',
    body: { schema: 'BundleArchive', raw: true, mediaType: 'application/gzip' },
    params: [
      {
        in: 'query',
        name: 'since',
        schema: { type: 'string' },
        description: 'A duration back (24h, 30m, 7d) or an ISO 8601 time; default 24h.',
      },
      { in: 'query', name: 'entrypoint', schema: { type: 'string' }, description: 'Only decisions on this entrypoint.' },
      { in: 'query', name: 'limit', schema: { type: 'integer', minimum: 1 }, description: 'At most this many decisions, oldest first.' },
    ],
    ok: { 200: { description: 'What the candidate decides differently, per entrypoint', schema: 'ReplayReport' } },
    errors: [
      'unsupported_media_type',
      'entrypoint_unknown',
      'bundle_unreadable',
      'bundle_malformed',
      'manifest_invalid',
      'data_invalid',
      'wasm_invalid',
      'entrypoint_missing',
      'bundle_not_default_deny',
      'builtin_not_supported',
      'signature_missing',
      'signature_invalid',
      'signature_key_unknown',
      'signature_algorithm_mismatch',
      'signature_files_mismatch',
      'signature_hash_mismatch',
    ],
    db: true,
    async handler(ctx, { replay, maxBodyBytes }) {
      // The body limit of every route holds here too (a streamed body included), under the bundle cap.
      const archive = await readRaw(ctx, Math.min(maxBodyBytes, MAX_BUNDLE_BYTES));
      if (!BUNDLE_TYPES.some((type) => ctx.is(type))) {
        throw new GatewayError('unsupported_media_type', 'send the candidate bundle as application/gzip');
      }
      const query = {
        since: parseSince(single(ctx.query.since) ?? DEFAULT_SINCE),
        limit: parseLimit(single(ctx.query.limit)),
        ...(single(ctx.query.entrypoint) !== undefined && { entrypoint: single(ctx.query.entrypoint)! }),
      };
      try {
        ctx.body = await replay.replay(archive, query);
      } catch (err) {
        if (err instanceof BundleError) throw new GatewayError(err.code, `candidate bundle refused: ${err.message}`);
        throw err;
      }
    },
  },
]);

function single(value: string | string[] | undefined): string | undefined {
  if (Array.isArray(value)) throw new GatewayError('bad_request', 'give each query parameter once');
  return value;
}
