import { GatewayError } from '../errors/index.js';

/**
 * What a scoped PSK may register, enforced by the register policy (`input.subject.psk`):
 * node ids matching `node_id_pattern`, only labels from `allowed_labels`, only regions from
 * `regions`. An absent key does not constrain; a PSK without constraints registers any node.
 */
export interface PskConstraints {
  /** A glob (`*` any run of characters, `?` one character) or an anchored regular expression (`^…$`). */
  node_id_pattern?: string;
  allowed_labels?: string[];
  regions?: string[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const GLOB = /^[A-Za-z0-9_.:*?-]{1,128}$/;
const REGEX_MAX = 256;
// Lookaround and back-references: not regular, not in the policy engine's RE2 dialect.
const NOT_REGULAR = /\(\?<?[=!]|\\[1-9]|\\k</;
const KEYS = new Set(['node_id_pattern', 'allowed_labels', 'regions']);

const invalid = (message: string) => new GatewayError('bad_request', `constraints: ${message}`);

/** Validates a node-id pattern: a glob of node-id characters, or an anchored regex the policy engine runs in linear time. */
function parsePattern(raw: unknown): string {
  if (typeof raw !== 'string') throw invalid('node_id_pattern must be a string');
  if (!raw.startsWith('^')) {
    if (!GLOB.test(raw)) throw invalid('node_id_pattern must be a glob of letters, digits, _.:- and * ?, or a regex anchored with ^…$');
    return raw;
  }
  if (raw.length > REGEX_MAX || !raw.endsWith('$') || raw.endsWith('\\$'))
    throw invalid(`node_id_pattern as a regex must be anchored with ^…$ and at most ${REGEX_MAX} characters`);
  if (NOT_REGULAR.test(raw)) throw invalid('node_id_pattern may not use lookaround or back-references');
  try {
    new RegExp(raw, 'u');
  } catch {
    throw invalid('node_id_pattern is not a valid regular expression');
  }
  return raw;
}

function parseNames(field: string, raw: unknown): string[] {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 64 || !raw.every((v) => typeof v === 'string' && NAME.test(v)))
    throw invalid(`${field} must be a list of 1-64 names (letters, digits, _.:-)`);
  return [...new Set(raw as string[])];
}

/** Validates the `constraints` of `POST /v1/psks`; null (or an empty object) is an unscoped PSK. */
export function parsePskConstraints(raw: unknown): PskConstraints | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('must be an object');
  const r = raw as Record<string, unknown>;
  const unknown = Object.keys(r).filter((k) => !KEYS.has(k));
  if (unknown.length > 0) throw invalid(`unknown keys ${unknown.join(', ')}`);
  const out: PskConstraints = {
    ...(r.node_id_pattern !== undefined && { node_id_pattern: parsePattern(r.node_id_pattern) }),
    ...(r.allowed_labels !== undefined && { allowed_labels: parseNames('allowed_labels', r.allowed_labels) }),
    ...(r.regions !== undefined && { regions: parseNames('regions', r.regions) }),
  };
  return Object.keys(out).length > 0 ? out : null;
}
