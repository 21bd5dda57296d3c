import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { packageRoot } from '../lib/package-root.js';
import { ConfigError } from './errors.js';
import { type Config, type ConfigKey, type KeySpec, SCHEMA } from './schema.js';

/** Where configuration comes from; the CLI passes the real process values, tests their own. */
export interface ConfigSources {
  env: Record<string, string | undefined>;
  /** Base for relative paths in values, usually `process.cwd()`. */
  cwd: string;
  /** Folder with `default.yaml` (and optional `local.yaml`); defaults to the package's `config/`. */
  configDir?: string;
}

type Raw = { value: unknown; from: string };

/**
 * Reads the YAML layers and env overrides once, validates every key against the schema and
 * returns a typed, frozen Config. Throws ConfigError naming the first bad key.
 */
export function loadConfig(sources: ConfigSources): Config {
  const configDir = sources.configDir ?? join(packageRoot(), 'config');
  const raw = new Map<string, Raw>();
  const files = [join(configDir, 'default.yaml'), join(configDir, 'local.yaml')];
  const extra = sources.env.CYNODE_CONFIG;
  if (extra) files.push(resolve(sources.cwd, extra));
  files.forEach((file, i) => {
    if (i === 0 || existsSync(file)) readLayer(file, raw);
    else if (i === 2) throw new ConfigError(`CYNODE_CONFIG names ${file}, which does not exist`);
  });
  for (const [key, spec] of entries()) {
    const fromEnv = sources.env[spec.env];
    if (fromEnv !== undefined) raw.set(key, { value: fromEnv, from: `env ${spec.env}` });
  }
  const values = new Map<ConfigKey, unknown>();
  for (const [key, spec] of entries()) {
    const found = raw.get(key);
    if (!found) throw new ConfigError(`missing key '${key}': set it in config/default.yaml or ${spec.env}`);
    values.set(key, coerce(key, spec, found));
  }
  return build(values, sources.cwd);
}

function entries(): [ConfigKey, KeySpec][] {
  return Object.entries(SCHEMA) as [ConfigKey, KeySpec][];
}

function readLayer(file: string, into: Map<string, Raw>): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  const problem = doc.errors[0];
  if (problem) throw new ConfigError(`${file}: invalid YAML: ${problem.message.split('\n')[0]}`);
  const tree: unknown = doc.toJS() ?? {};
  flatten(tree, '', file, into);
}

function flatten(node: unknown, prefix: string, file: string, into: Map<string, Raw>): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    throw new ConfigError(`${file}: '${prefix || '(top level)'}' must be a mapping of keys`);
  }
  for (const [name, value] of Object.entries(node)) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (key in SCHEMA) {
      into.set(key, { value, from: file });
    } else if (Object.keys(SCHEMA).some((k) => k.startsWith(key + '.'))) {
      flatten(value, key, file, into);
    } else {
      throw new ConfigError(`${file}: unknown key '${key}'`);
    }
  }
}

function coerce(key: ConfigKey, spec: KeySpec, { value, from }: Raw): unknown {
  const fail = (expected: string): never => {
    const shown = 'secret' in spec && spec.secret ? '(value hidden)' : JSON.stringify(value);
    throw new ConfigError(`invalid value for '${key}' (from ${from}): expected ${expected}, got ${shown}`);
  };
  switch (spec.type) {
    case 'int': {
      const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < spec.min || n > spec.max) {
        return fail(`an integer from ${spec.min} to ${spec.max}`);
      }
      return n;
    }
    case 'enum':
      if (typeof value !== 'string' || !spec.values.includes(value)) return fail(`one of ${spec.values.join(', ')}`);
      return value;
    case 'bool':
      if (value === true || value === 'true') return true;
      if (value === false || value === 'false') return false;
      return fail('true or false');
    case 'list': {
      const list = typeof value === 'string' ? value.split(',').map((v) => v.trim()).filter(Boolean) : value;
      if (!Array.isArray(list) || !list.every((v) => typeof v === 'string' && v !== '')) return fail('a list of strings');
      return list;
    }
    case 'string':
      if ((value === null || value === '') && spec.nullable) return null;
      if (typeof value !== 'string' || value.trim() === '') return fail('a non-empty string');
      if (key === 'database.url' && !/^postgres(ql)?:\/\/[^\s]+$/.test(value)) {
        return fail('a postgres:// or postgresql:// URL');
      }
      return value;
  }
}

function build(v: Map<ConfigKey, unknown>, cwd: string): Config {
  const get = <T>(key: ConfigKey) => v.get(key) as T;
  const path = (key: ConfigKey) => {
    const p = get<string>(key);
    return isAbsolute(p) ? p : resolve(cwd, p);
  };
  const optionalPath = (key: ConfigKey) => (get<string | null>(key) === null ? null : path(key));
  const bundle = get<string>('policy.bundle');
  const config: Config = {
    server: {
      host: get('server.host'),
      controlPort: get('server.controlPort'),
      mcpPort: get('server.mcpPort'),
      egressPort: get('server.egressPort'),
      shutdownTimeoutMs: get('server.shutdownTimeoutMs'),
      requestTimeoutMs: get('server.requestTimeoutMs'),
      readyCheckTimeoutMs: get('server.readyCheckTimeoutMs'),
      maxBodyBytes: get('server.maxBodyBytes'),
    },
    database: {
      url: get('database.url'),
      dataDir: path('database.dataDir'),
      poolMax: get('database.poolMax'),
      connectTimeoutMs: get('database.connectTimeoutMs'),
      startupTimeoutMs: get('database.startupTimeoutMs'),
    },
    policy: {
      bundle: /^https?:\/\//.test(bundle) ? bundle : path('policy.bundle'),
      bundleToken: get('policy.bundleToken'),
      pollMinDelayMs: get('policy.pollMinDelayMs'),
      pollMaxDelayMs: get('policy.pollMaxDelayMs'),
      longPollTimeoutMs: get('policy.longPollTimeoutMs'),
      allowUnsigned: get('policy.allowUnsigned'),
      verificationKeysFile: optionalPath('policy.verificationKeysFile'),
      signingKeyFile: optionalPath('policy.signingKeyFile'),
      signingKeyId: get('policy.signingKeyId'),
      signingAlgorithm: get('policy.signingAlgorithm'),
      policiesDir: path('policy.policiesDir'),
      coverageThreshold: get('policy.coverageThreshold'),
    },
    decisionLog: {
      maskPaths: get('decisionLog.maskPaths'),
      bufferSize: get('decisionLog.bufferSize'),
      flushIntervalMs: get('decisionLog.flushIntervalMs'),
      enqueueTimeoutMs: get('decisionLog.enqueueTimeoutMs'),
    },
    auth: {
      adminToken: get('auth.adminToken'),
      adminTokenFile: path('auth.adminTokenFile'),
      bundleServiceToken: get('auth.bundleServiceToken'),
      keyRotationMs: get('auth.keyRotationMs'),
      forwardTokenTtlMs: get('auth.forwardTokenTtlMs'),
      issuer: get('auth.issuer'),
      workerTokenTtlMs: get('auth.workerTokenTtlMs'),
      pskFailureLimit: get('auth.pskFailureLimit'),
      pskFailureWindowMs: get('auth.pskFailureWindowMs'),
    },
    workers: {
      pollIntervalMs: get('workers.pollIntervalMs'),
      heartbeatIntervalMs: get('workers.heartbeatIntervalMs'),
      nodeHoldMs: get('workers.nodeHoldMs'),
    },
    jobs: {
      leaseTtlMs: get('jobs.leaseTtlMs'),
      longPollMaxMs: get('jobs.longPollMaxMs'),
      wakeFallbackMs: get('jobs.wakeFallbackMs'),
      reaperIntervalMs: get('jobs.reaperIntervalMs'),
      retryBaseMs: get('jobs.retryBaseMs'),
      retryMaxMs: get('jobs.retryMaxMs'),
      defaultMaxAttempts: get('jobs.defaultMaxAttempts'),
      defaultTimeoutMs: get('jobs.defaultTimeoutMs'),
      claimCandidates: get('jobs.claimCandidates'),
    },
    vault: {
      masterKey: get('vault.masterKey'),
      masterKeyFile: path('vault.masterKeyFile'),
      previousMasterKeys: get('vault.previousMasterKeys'),
    },
    egress: {
      url: get('egress.url'),
      region: get('egress.region'),
      openaiBaseUrl: get('egress.openaiBaseUrl'),
      anthropicBaseUrl: get('egress.anthropicBaseUrl'),
      connectTimeoutMs: get('egress.connectTimeoutMs'),
      idleTimeoutMs: get('egress.idleTimeoutMs'),
      maxRetries: get('egress.maxRetries'),
      maxRetryWaitMs: get('egress.maxRetryWaitMs'),
      reservationTtlMs: get('egress.reservationTtlMs'),
      reaperIntervalMs: get('egress.reaperIntervalMs'),
    },
    mcp: {
      upstreams: get('mcp.upstreams'),
      stdioEnv: get('mcp.stdioEnv'),
      toolTimeoutMs: get('mcp.toolTimeoutMs'),
      maxArgumentBytes: get('mcp.maxArgumentBytes'),
      maxResponseBytes: get('mcp.maxResponseBytes'),
      discoveryTtlMs: get('mcp.discoveryTtlMs'),
    },
    artifacts: { port: get('artifacts.port'), gatewayUrl: get('artifacts.gatewayUrl') },
    audit: {
      bufferSize: get('audit.bufferSize'),
      flushIntervalMs: get('audit.flushIntervalMs'),
      enqueueTimeoutMs: get('audit.enqueueTimeoutMs'),
    },
    log: { level: get('log.level') },
  };
  if (config.mcp.stdioEnv.some((pair) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(pair))) {
    throw new ConfigError(`invalid value for 'mcp.stdioEnv': expected NAME=value entries (values hidden)`);
  }
  for (const key of ['egress.url', 'egress.openaiBaseUrl', 'egress.anthropicBaseUrl', 'artifacts.gatewayUrl'] as const) {
    const url = get<string | null>(key);
    if (url !== null && !/^https?:\/\/[^\s]+$/.test(url)) throw new ConfigError(`invalid value for '${key}': expected an http(s) URL, got ${JSON.stringify(url)}`);
  }
  if (config.policy.pollMaxDelayMs < config.policy.pollMinDelayMs) {
    throw new ConfigError(`'policy.pollMaxDelayMs' (${config.policy.pollMaxDelayMs}) must not be below 'policy.pollMinDelayMs' (${config.policy.pollMinDelayMs})`);
  }
  if (config.jobs.retryMaxMs < config.jobs.retryBaseMs) {
    throw new ConfigError(`'jobs.retryMaxMs' (${config.jobs.retryMaxMs}) must not be below 'jobs.retryBaseMs' (${config.jobs.retryBaseMs})`);
  }
  if (config.workers.heartbeatIntervalMs >= config.jobs.leaseTtlMs) {
    throw new ConfigError(`'workers.heartbeatIntervalMs' (${config.workers.heartbeatIntervalMs}) must be below 'jobs.leaseTtlMs' (${config.jobs.leaseTtlMs}), or leases lapse between heartbeats`);
  }
  return deepFreeze(config);
}

function deepFreeze<T extends object>(o: T): T {
  for (const value of Object.values(o)) if (value && typeof value === 'object') deepFreeze(value);
  return Object.freeze(o);
}
