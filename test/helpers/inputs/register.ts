import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { packageRoot } from '../../../src/lib/package-root.js';
import { ODD_VALUES, type Random } from './random.js';

interface Admission {
  labels: Record<string, boolean>;
  regions: Record<string, Record<string, boolean>>;
  inference_modes: Record<string, Record<string, boolean>>;
  providers: Record<string, boolean>;
  cloud_providers: Record<string, boolean>;
  blocked_nodes: Record<string, boolean>;
}

const admission = (parse(readFileSync(join(packageRoot(), 'policies/config/register/data.yaml'), 'utf8')) as { admission: Admission })
  .admission;
const on = (o: Record<string, unknown>) => Object.keys(o);
const REGIONS = [...on(admission.regions.cloud!), ...on(admission.regions.local!)];
const MODES = [...new Set([...on(admission.inference_modes.cloud!), ...on(admission.inference_modes.local!)])];

/** A value for a field: usually from the allowlist, sometimes off it, sometimes of the wrong type. */
function field<T>(r: Random, allowed: readonly T[], offList: readonly T[]): unknown {
  const roll = r.next();
  if (roll < 0.75) return r.pick(allowed);
  if (roll < 0.9) return r.pick(offList);
  return r.pick(ODD_VALUES);
}

function list(r: Random, allowed: readonly string[], offList: readonly string[], max: number): unknown {
  if (r.chance(0.05)) return r.pick(ODD_VALUES);
  const n = r.int(max + 1);
  return Array.from({ length: n }, () => (r.chance(0.85) ? r.pick(allowed) : r.chance(0.8) ? r.pick(offList) : r.pick(ODD_VALUES)));
}

/** A report that satisfies every allowlist for its class. */
function validReport(r: Random): Record<string, unknown> {
  const cloud = r.chance(0.5);
  const cls = cloud ? 'cloud' : 'local';
  const labels = on(admission.labels).filter((l) => l !== 'cloud' && r.chance(0.3));
  return {
    node_id: `${cls}-node-${r.int(10_000)}`,
    labels: cloud ? ['cloud', ...labels] : labels,
    ...((cloud || r.chance(0.5)) && { region: r.pick(on(admission.regions[cls]!)) }),
    ...(cloud && { provider: r.pick(on(admission.cloud_providers)) }),
    inference_mode: r.pick(on(admission.inference_modes[cls]!)),
    supported_providers: on(admission.providers).filter(() => r.chance(0.5)),
  };
}

/** One `register` input covering valid reports, every deny reason, missing fields and wrong types. */
export function registerInput(r: Random): unknown {
  if (r.chance(0.02)) return r.pick(ODD_VALUES); // not even an object
  if (r.chance(0.25)) return { action: 'register', subject: validReport(r), resource: {}, context: {} };
  const subject: Record<string, unknown> = {
    node_id: field(r, ['cloud-us-east-1-01', 'lab-gpu-01', `node-${r.int(1000)}`], [...on(admission.blocked_nodes), '']),
    labels: list(r, on(admission.labels), ['root', 'Cloud', 'provider_x'], 4),
    region: field(r, REGIONS, ['ap-south-1', 'mars-1', 'US-EAST-1']),
    provider: field(r, on(admission.cloud_providers), ['mystery-cloud', 'AWS']),
    inference_mode: field(r, MODES, ['gpu_direct', 'provider-api']),
    supported_providers: list(r, on(admission.providers), ['shadyai', 'OpenAI'], 3),
    supported_models: list(r, ['gpt-4o-mini', 'claude-3-5-sonnet'], ['x'], 2),
    max_concurrency: r.pick([1, 4, 64, 0, -1, '8']),
  };
  for (const key of Object.keys(subject)) if (r.chance(0.07)) delete subject[key];
  if (r.chance(0.5)) {
    const labels = Array.isArray(subject.labels) ? subject.labels : [];
    subject.labels = r.chance(0.5) ? [...labels, 'cloud'] : labels.filter((l) => l !== 'cloud');
  }
  return { action: 'register', subject: r.chance(0.02) ? r.pick(ODD_VALUES) : subject, resource: {}, context: {} };
}
