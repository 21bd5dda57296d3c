/**
 * The configuration schema: every key the gateway reads, its type, its limits and the
 * environment variable that overrides it, as one nested tree shaped like the YAML. Both the
 * `Config` type and the loader are derived from it, so a new key is one line here plus its
 * default in `config/default.yaml` (the YAML an operator reads is the truth for defaults;
 * this file only says what a valid value is). Checks across keys are the named rules in
 * `rules.ts`.
 */
import {
  bool,
  type Infer,
  int,
  type KeyPath,
  type KeySpec,
  type KeyTree,
  keysOf,
  list,
  nullable,
  oneOf,
  path,
  pathOrUrl,
  str,
  url,
} from './keys.js';

const SIGNING_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512'];

const POSTGRES_URL = { pattern: /^postgres(ql)?:\/\/[^\s]+$/, expected: 'a postgres:// or postgresql:// URL' };
const HTTP_URL = { pattern: /^https?:\/\/[^\s]+$/, expected: 'an http(s) URL' };
const ENV_PAIR = { pattern: /^[A-Za-z_][A-Za-z0-9_]*=/, expected: 'NAME=value entries' };

/** The tree of every key; see the module comment. */
export const CONFIG_SCHEMA = {
  server: {
    host: str('CYNODE_HOST'),
    controlPort: int('CYNODE_CONTROL_PORT', 0, 65535),
    mcpPort: int('CYNODE_MCP_PORT', 0, 65535),
    egressPort: int('CYNODE_EGRESS_PORT', 0, 65535),
    shutdownTimeoutMs: int('CYNODE_SHUTDOWN_TIMEOUT_MS', 0, 600_000),
    requestTimeoutMs: int('CYNODE_REQUEST_TIMEOUT_MS', 100, 600_000),
    maxBodyBytes: int('CYNODE_MAX_BODY_BYTES', 1024, 104_857_600),
    readyCheckTimeoutMs: int('CYNODE_READY_CHECK_TIMEOUT_MS', 50, 60_000),
    /** HTTPS on every listener when both files are set; each is watched and reloaded when it changes. */
    tls: {
      certFile: nullable(path('CYNODE_TLS_CERT_FILE')),
      keyFile: nullable(path('CYNODE_TLS_KEY_FILE')),
      /** CAs whose client certificates the control plane accepts (mutual TLS on the Worker API); null: none asked for. */
      clientCaFile: nullable(path('CYNODE_TLS_CLIENT_CA_FILE')),
    },
  },
  database: {
    /** PostgreSQL URL, or null for the embedded database. Holds a password: never log it. */
    url: nullable(str('DATABASE_URL', { secret: true, match: POSTGRES_URL, format: 'postgres(ql):// URL' })),
    dataDir: path('CYNODE_DATA_DIR'),
    poolMax: int('CYNODE_DATABASE_POOL_MAX', 1, 1000),
    connectTimeoutMs: int('CYNODE_DATABASE_CONNECT_TIMEOUT_MS', 100, 120_000),
    startupTimeoutMs: int('CYNODE_DATABASE_STARTUP_TIMEOUT_MS', 0, 600_000),
  },
  policy: {
    /** A bundle file path, or an http(s) URL of an OPA Bundle Service. */
    bundle: pathOrUrl('CYNODE_BUNDLE'),
    bundleToken: nullable(str('CYNODE_BUNDLE_TOKEN', { secret: true })),
    pollMinDelayMs: int('CYNODE_BUNDLE_POLL_MIN_DELAY_MS', 100, 86_400_000),
    pollMaxDelayMs: int('CYNODE_BUNDLE_POLL_MAX_DELAY_MS', 100, 86_400_000),
    longPollTimeoutMs: int('CYNODE_BUNDLE_LONG_POLL_TIMEOUT_MS', 0, 3_600_000),
    allowUnsigned: bool('CYNODE_POLICY_ALLOW_UNSIGNED'),
    verificationKeysFile: nullable(path('CYNODE_BUNDLE_VERIFICATION_KEYS_FILE')),
    signingKeyFile: nullable(path('CYNODE_BUNDLE_SIGNING_KEY_FILE')),
    signingKeyId: str('CYNODE_BUNDLE_SIGNING_KEY_ID'),
    signingAlgorithm: oneOf<string>('CYNODE_BUNDLE_SIGNING_ALGORITHM', SIGNING_ALGORITHMS),
    policiesDir: path('CYNODE_POLICIES_DIR'),
    coverageThreshold: int('CYNODE_POLICY_COVERAGE_THRESHOLD', 0, 100),
  },
  decisionLog: {
    maskPaths: list('CYNODE_DECISION_LOG_MASK_PATHS'),
    bufferSize: int('CYNODE_DECISION_LOG_BUFFER_SIZE', 1, 1_000_000),
    flushIntervalMs: int('CYNODE_DECISION_LOG_FLUSH_INTERVAL_MS', 1, 60_000),
    enqueueTimeoutMs: int('CYNODE_DECISION_LOG_ENQUEUE_TIMEOUT_MS', 1, 60_000),
    /** A copy of every decision sent to an OPA Decision Log Service; the PostgreSQL log stays the record. */
    export: {
      /** Where gzip-compressed arrays of OPA decision events are POSTed; null: no export. */
      url: nullable(url('CYNODE_DECISION_LOG_EXPORT_URL')),
      token: nullable(str('CYNODE_DECISION_LOG_EXPORT_TOKEN', { secret: true })),
      uploadSizeLimitBytes: int('CYNODE_DECISION_LOG_EXPORT_UPLOAD_SIZE_LIMIT_BYTES', 1024, 16_777_216),
      bufferSizeLimitEvents: int('CYNODE_DECISION_LOG_EXPORT_BUFFER_SIZE_LIMIT_EVENTS', 1, 10_000_000),
      minDelayMs: int('CYNODE_DECISION_LOG_EXPORT_MIN_DELAY_MS', 10, 86_400_000),
      maxDelayMs: int('CYNODE_DECISION_LOG_EXPORT_MAX_DELAY_MS', 10, 86_400_000),
      timeoutMs: int('CYNODE_DECISION_LOG_EXPORT_TIMEOUT_MS', 100, 600_000),
      flushTimeoutMs: int('CYNODE_DECISION_LOG_EXPORT_FLUSH_TIMEOUT_MS', 0, 600_000),
    },
  },
  /** Status reports in OPA's Status API format. */
  status: {
    /** Where reports are POSTed on every bundle change and every `periodMs`; null: no reports. */
    url: nullable(url('CYNODE_STATUS_URL')),
    token: nullable(str('CYNODE_STATUS_TOKEN', { secret: true })),
    periodMs: int('CYNODE_STATUS_PERIOD_MS', 100, 86_400_000),
    timeoutMs: int('CYNODE_STATUS_TIMEOUT_MS', 100, 600_000),
  },
  auth: {
    /** The bootstrap admin/orchestrator bearer token; null reads (or creates) `adminTokenFile`. */
    adminToken: nullable(str('CYNODE_ADMIN_TOKEN', { secret: true })),
    adminTokenFile: path('CYNODE_ADMIN_TOKEN_FILE'),
    bundleServiceToken: nullable(str('CYNODE_BUNDLE_SERVICE_TOKEN', { secret: true })),
    /** A read-only bearer token: reads status, jobs, workers, decisions, budgets and audit; changes nothing. */
    readerToken: nullable(str('CYNODE_READER_TOKEN', { secret: true })),
    /** A bearer token `/metrics` asks for (the admin token also works); null: `/metrics` is public. */
    metricsToken: nullable(str('CYNODE_METRICS_TOKEN', { secret: true })),
    keyRotationMs: int('CYNODE_KEY_ROTATION_MS', 60_000, 31_536_000_000),
    forwardTokenTtlMs: int('CYNODE_FORWARD_TOKEN_TTL_MS', 1000, 600_000),
    /** `iss` of every gateway-issued JWT. */
    issuer: str('CYNODE_AUTH_ISSUER'),
    workerTokenTtlMs: int('CYNODE_WORKER_TOKEN_TTL_MS', 1000, 3_600_000),
    pskFailureLimit: int('CYNODE_PSK_FAILURE_LIMIT', 1, 10_000),
    pskFailureWindowMs: int('CYNODE_PSK_FAILURE_WINDOW_MS', 1000, 86_400_000),
  },
  workers: {
    pollIntervalMs: int('CYNODE_WORKER_POLL_INTERVAL_MS', 100, 600_000),
    heartbeatIntervalMs: int('CYNODE_WORKER_HEARTBEAT_INTERVAL_MS', 100, 600_000),
    nodeHoldMs: int('CYNODE_WORKER_NODE_HOLD_MS', 1000, 86_400_000),
    quarantinePollMs: int('CYNODE_WORKER_QUARANTINE_POLL_MS', 100, 600_000),
  },
  jobs: {
    leaseTtlMs: int('CYNODE_JOB_LEASE_TTL_MS', 500, 3_600_000),
    longPollMaxMs: int('CYNODE_JOB_LONG_POLL_MAX_MS', 0, 30_000),
    wakeFallbackMs: int('CYNODE_JOB_WAKE_FALLBACK_MS', 50, 60_000),
    reaperIntervalMs: int('CYNODE_JOB_REAPER_INTERVAL_MS', 50, 60_000),
    retryBaseMs: int('CYNODE_JOB_RETRY_BASE_MS', 0, 3_600_000),
    retryMaxMs: int('CYNODE_JOB_RETRY_MAX_MS', 0, 86_400_000),
    defaultMaxAttempts: int('CYNODE_JOB_DEFAULT_MAX_ATTEMPTS', 1, 100),
    defaultTimeoutMs: int('CYNODE_JOB_DEFAULT_TIMEOUT_MS', 1000, 86_400_000),
    claimCandidates: int('CYNODE_JOB_CLAIM_CANDIDATES', 1, 1000),
  },
  vault: {
    /** The credential master key (base64, 32 bytes); null reads (or creates) `masterKeyFile`. Never log it. */
    masterKey: nullable(str('CYNODE_MASTER_KEY', { secret: true })),
    masterKeyFile: path('CYNODE_MASTER_KEY_FILE'),
    /** Earlier master keys (base64), still able to unwrap until `credentials rewrap` has moved everything. */
    previousMasterKeys: list('CYNODE_MASTER_KEY_PREVIOUS', { secret: true }),
  },
  egress: {
    /** Where the control plane forwards allowed calls; null: this host's egress port. */
    url: nullable(url('CYNODE_EGRESS_URL')),
    /** The region direct-routed calls originate from, for the policy's regional rules. */
    region: str('CYNODE_EGRESS_REGION'),
    /**
     * Each provider's endpoint, keyed by the provider name the egress adapters use (a proxy,
     * or a test server). In Config a typed record `{ openai: { baseUrl }, anthropic: { baseUrl } }`,
     * so it also reads as a `Record<string, { baseUrl: string }>`; a provider is one line here.
     */
    providers: {
      openai: { baseUrl: url('CYNODE_OPENAI_BASE_URL') },
      anthropic: { baseUrl: url('CYNODE_ANTHROPIC_BASE_URL') },
    },
    connectTimeoutMs: int('CYNODE_EGRESS_CONNECT_TIMEOUT_MS', 100, 600_000),
    idleTimeoutMs: int('CYNODE_EGRESS_IDLE_TIMEOUT_MS', 100, 600_000),
    maxRetries: int('CYNODE_EGRESS_MAX_RETRIES', 0, 10),
    maxRetryWaitMs: int('CYNODE_EGRESS_MAX_RETRY_WAIT_MS', 0, 600_000),
    /** A reservation nobody settled within this long is charged in full (the call's replica died). */
    reservationTtlMs: int('CYNODE_EGRESS_RESERVATION_TTL_MS', 10_000, 86_400_000),
    reaperIntervalMs: int('CYNODE_EGRESS_REAPER_INTERVAL_MS', 100, 600_000),
    /** How long a prepaid block admits the calls of a burst without a database round trip; 0: every call admitted alone. */
    blockDrawMs: int('CYNODE_EGRESS_BLOCK_DRAW_MS', 0, 10_000),
    /** The most calls one prepaid block admits. */
    blockMaxCalls: int('CYNODE_EGRESS_BLOCK_MAX_CALLS', 2, 1000),
    /** How long a call's context (its job and budgets) answers the same call again, while lease ends are heard; 0: every call reads it. */
    contextReuseMs: int('CYNODE_EGRESS_CONTEXT_REUSE_MS', 0, 1000),
  },
  budgets: {
    /** Where a budget's soft-limit alert is posted (once per budget and period); null: metric and audit row only. May carry a token. */
    alertWebhookUrl: nullable(str('CYNODE_BUDGETS_ALERT_WEBHOOK_URL', { secret: true, match: HTTP_URL, format: 'http(s) URL' })),
    alertTimeoutMs: int('CYNODE_BUDGETS_ALERT_TIMEOUT_MS', 100, 600_000),
    alertMaxAttempts: int('CYNODE_BUDGETS_ALERT_MAX_ATTEMPTS', 1, 100),
  },
  mcp: {
    /** Upstream MCP servers, `name=url`: the only addresses tool calls are ever routed to. */
    upstreams: list('CYNODE_MCP_UPSTREAMS'),
    /** `NAME=value` pairs stdio upstreams get on top of the SDK's safe defaults; may hold secrets. */
    stdioEnv: list('CYNODE_MCP_STDIO_ENV', { secret: true, each: ENV_PAIR }),
    toolTimeoutMs: int('CYNODE_MCP_TOOL_TIMEOUT_MS', 100, 600_000),
    maxArgumentBytes: int('CYNODE_MCP_MAX_ARGUMENT_BYTES', 256, 104_857_600),
    maxResponseBytes: int('CYNODE_MCP_MAX_RESPONSE_BYTES', 1024, 104_857_600),
    discoveryTtlMs: int('CYNODE_MCP_DISCOVERY_TTL_MS', 0, 86_400_000),
  },
  /** The reference upstream tool server (`cynode-gateway artifact-server`). */
  artifacts: {
    port: int('CYNODE_ARTIFACTS_PORT', 0, 65535),
    gatewayUrl: url('CYNODE_GATEWAY_URL'),
  },
  audit: {
    bufferSize: int('CYNODE_AUDIT_BUFFER_SIZE', 1, 1_000_000),
    flushIntervalMs: int('CYNODE_AUDIT_FLUSH_INTERVAL_MS', 1, 60_000),
    enqueueTimeoutMs: int('CYNODE_AUDIT_ENQUEUE_TIMEOUT_MS', 1, 60_000),
    /** Signed heads of every hash-chained table, so truncation and rewrites are caught. */
    checkpoints: {
      /** How often each replica takes a checkpoint; 0: only at shutdown. */
      intervalMs: int('CYNODE_AUDIT_CHECKPOINT_INTERVAL_MS', 0, 86_400_000),
      /** Where checkpoints also go: a file (JSON lines, appended) or an http(s) URL (POST); null: PostgreSQL only. */
      sink: nullable(pathOrUrl('CYNODE_AUDIT_CHECKPOINT_SINK')),
    },
  },
  log: {
    level: oneOf('CYNODE_LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
} satisfies KeyTree;

/** The validated configuration the composition root hands to every factory, inferred from the schema. */
export type Config = Infer<typeof CONFIG_SCHEMA>;

/** A key's dotted name, e.g. `'server.controlPort'` (how messages, docs and tests name it). */
export type ConfigKey = KeyPath<typeof CONFIG_SCHEMA>;

/** The same keys flattened by dotted name, in schema order: for the loader, the docs and tests. */
export const SCHEMA = Object.fromEntries(keysOf(CONFIG_SCHEMA)) as { readonly [K in ConfigKey]: KeySpec };
