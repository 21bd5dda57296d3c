/**
 * Generates docs/configuration.md from the config schema (src/config/schema.ts: keys, env
 * variables, types, bounds, formats, secret flags) and config/default.yaml (defaults, and the
 * comment beside each key as its description). One table per top-level group; nested keys
 * (e.g. `egress.providers.openai.baseUrl`) are rows of their group. A test fails when the
 * committed page is stale.
 *
 * Run: npm run docs:config   (deterministic: a re-run changes nothing)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';
import type { KeySpec } from '../src/config/keys.js';
import { SCHEMA } from '../src/config/schema.js';
import { packageRoot } from '../src/lib/package-root.js';

/** Variables read outside the schema: by the CLI, the toolchain and the reference worker. */
export const OTHER_ENV: readonly { env: string; description: string }[] = [
  { env: 'CYNODE_CONFIG', description: 'A YAML file layered over config/default.yaml and config/local.yaml (must exist when set).' },
  { env: 'CYNODE_ROLE', description: 'Default of `serve --role`: control, mcp, egress, a comma list, or all (default all).' },
  {
    env: 'CYNODE_WORKERS',
    description: 'Default of `serve --workers`: replica processes on the same ports, 1-64 (default 1; PostgreSQL only above 1).',
  },
  { env: 'CYNODE_OPA_BIN', description: 'The OPA CLI `policy build|test` runs; default: the pinned build in .tools/bin.' },
  { env: 'CYNODE_ORCH_URL', description: 'Worker: the control plane URL (required).' },
  { env: 'CYNODE_NODE_ID', description: 'Worker: its node id (required).' },
  { env: 'CYNODE_REGISTER_PSK', description: 'Worker: the registration PSK (required, secret).' },
  { env: 'CYNODE_LABELS', description: 'Worker: comma-separated labels, e.g. cloud,provider_openai.' },
  { env: 'CYNODE_CAP_REGION', description: 'Worker: its region.' },
  { env: 'CYNODE_CAP_PROVIDER', description: 'Worker: the cloud it runs in.' },
  {
    env: 'CYNODE_CAP_INFERENCE_MODE',
    description: 'Worker: provider_api, ollama_remote or ollama_local (default provider_api with providers, else ollama_remote).',
  },
  { env: 'CYNODE_CAP_SUPPORTED_PROVIDERS', description: 'Worker: comma-separated providers.' },
  { env: 'CYNODE_CAP_SUPPORTED_MODELS', description: 'Worker: comma-separated models.' },
  { env: 'CYNODE_CAP_MAX_CONCURRENCY', description: 'Worker: jobs at once, 1-1024 (default 4).' },
  { env: 'CYNODE_CAP_RATE_LIMIT_RPM', description: 'Worker: requests per minute it accepts.' },
  { env: 'CYNODE_CAP_RATE_LIMIT_TPM', description: 'Worker: tokens per minute it accepts.' },
  {
    env: 'CYNODE_CAP_REACHABLE_ENDPOINTS',
    description: 'Worker: comma-separated endpoints it can reach (default: the control plane URL).',
  },
  { env: 'CYNODE_WORKER_POLL_WAIT_MS', description: 'Worker: long-poll wait, 0-30000 (default 25000).' },
  { env: 'CYNODE_CA_FILE', description: 'Worker and final gate: PEM CAs the gateway certificate may chain to, besides the system ones.' },
  {
    env: 'CYNODE_ALLOW_INSECURE',
    description: 'Worker and final gate: true allows plain http:// to a gateway that is not loopback (default false: refused).',
  },
  { env: 'CYNODE_CLIENT_CERT_FILE', description: 'Worker: PEM client certificate presented to the control plane (mutual TLS).' },
  { env: 'CYNODE_CLIENT_KEY_FILE', description: 'Worker: PEM key of CYNODE_CLIENT_CERT_FILE.' },
  {
    env: 'CYNODE_AGENT_COMMAND',
    description: 'Worker: the command agent jobs run, a JSON list or words split on spaces, no shell (absent: no agent jobs).',
  },
  { env: 'CYNODE_MCP_URL', description: "Worker: the MCP gateway's base URL for agents (default: the control plane host, port 12083)." },
  { env: 'CYNODE_JOB_ID', description: 'Agent: set by the worker for the agent of an agent job: the job it runs for.' },
  { env: 'CYNODE_TASK_ID', description: "Agent: set by the worker for the agent of an agent job: the job's task." },
  { env: 'CYNODE_AGENT_MAX_OUTPUT_BYTES', description: "Worker: the most of an agent's stdout kept as its result (default 1048576)." },
];

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (text: string) => `\`${text}\``;

function typeOf(spec: KeySpec): { type: string; bounds: string } {
  switch (spec.type) {
    case 'int':
      return { type: 'integer', bounds: `${spec.min} – ${spec.max}` };
    case 'enum':
      return { type: 'enum', bounds: spec.values.join(', ') };
    case 'list':
      return { type: 'list (YAML sequence; env: comma-separated)', bounds: '' };
    case 'string':
      return { type: spec.nullable ? 'string or null' : 'string', bounds: spec.format };
    case 'bool':
      return { type: 'boolean', bounds: 'true, false' };
  }
}

function defaultOf(value: unknown): string {
  if (value === null) return code('null');
  if (Array.isArray(value)) return value.length === 0 ? code('[]') : value.map((v) => code(String(v))).join(', ');
  return code(String(value));
}

/** The value under a dotted key in a parsed YAML tree (undefined when absent). */
function valueAt(tree: unknown, key: string): unknown {
  return key
    .split('.')
    .reduce<unknown>((node, part) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined), tree);
}

/** The page, from the schema and the shipped defaults under `root`. */
export function renderConfigurationDoc(root: string = packageRoot()): string {
  const yamlText = readFileSync(join(root, 'config', 'default.yaml'), 'utf8');
  const defaults: unknown = parse(yamlText);
  // The comment beside a key: `# ENV_NAME (note): description`.
  const notes = new Map<string, string>();
  for (const line of yamlText.split('\n')) {
    const m = /#\s*([A-Z][A-Z0-9_]+)(?:\s*\([^)]*\))?:\s*(.*)$/.exec(line);
    if (m) notes.set(m[1]!, m[2]!.trim());
  }
  const sections = new Map<string, string[]>();
  for (const [key, spec] of Object.entries(SCHEMA) as [string, KeySpec][]) {
    const section = key.split('.')[0]!;
    const { type, bounds } = typeOf(spec);
    const secret = spec.secret ? 'yes' : '';
    const row = `| ${code(key)} | ${code(spec.env)} | ${type} | ${cell(bounds)} | ${cell(defaultOf(valueAt(defaults, key)))} | ${secret} | ${cell(notes.get(spec.env) ?? '')} |`;
    sections.set(section, [...(sections.get(section) ?? []), row]);
  }
  const out = [
    '# Configuration reference',
    '',
    '<!-- Generated by `npm run docs:config` (scripts/gen-config-doc.ts) from src/config/schema.ts and',
    '     config/default.yaml. Do not edit by hand: a test fails when this page is stale. -->',
    '',
    'Every key the gateway reads, in `config/default.yaml` (the defaults), overridden in order by',
    '`config/local.yaml`, the file named by `CYNODE_CONFIG`, and the environment variable beside',
    'each key. An unknown key or a bad value stops the gateway with exit code 2 and a message',
    'naming the key. Keys marked secret are never logged; pass them through a secret store',
    '(see [deploy.md](deploy.md)).',
    '',
  ];
  for (const [section, rows] of sections) {
    out.push(
      `## ${section}`,
      '',
      '| key | env | type | bounds / values | default | secret | description |',
      '|---|---|---|---|---|---|---|',
      ...rows,
      '',
    );
  }
  out.push(
    '## Other environment variables',
    '',
    'Read outside the schema: by the CLI, the policy toolchain and the reference worker (`cynode-gateway worker`, configured by the `CYNODE_*` variables below).',
    '',
  );
  out.push('| env | description |', '|---|---|', ...OTHER_ENV.map((e) => `| ${code(e.env)} | ${cell(e.description)} |`), '');
  return out.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const target = join(packageRoot(), 'docs', 'configuration.md');
  writeFileSync(target, renderConfigurationDoc());
  console.log(`wrote ${target}`);
}
