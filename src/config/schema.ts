/**
 * The configuration schema: every key the gateway reads, its type, its limits and the
 * environment variable that overrides it. Defaults live in `config/default.yaml`, so the
 * YAML an operator reads is the truth; this file only says what a valid value is.
 */

/** How one key's raw value (YAML scalar or env string) becomes a typed value. */
export type KeySpec =
  | { type: 'string'; env: string; nullable?: boolean; secret?: boolean }
  | { type: 'int'; env: string; min: number; max: number }
  | { type: 'enum'; env: string; values: readonly string[] }
  | { type: 'bool'; env: string }
  /** A list of strings: a YAML sequence, or a comma-separated env value. */
  | { type: 'list'; env: string; secret?: boolean };

export const SCHEMA = {
  'server.host': { type: 'string', env: 'CYNODE_HOST' },
  'server.controlPort': { type: 'int', env: 'CYNODE_CONTROL_PORT', min: 0, max: 65535 },
  'server.mcpPort': { type: 'int', env: 'CYNODE_MCP_PORT', min: 0, max: 65535 },
  'server.egressPort': { type: 'int', env: 'CYNODE_EGRESS_PORT', min: 0, max: 65535 },
  'server.shutdownTimeoutMs': { type: 'int', env: 'CYNODE_SHUTDOWN_TIMEOUT_MS', min: 0, max: 600_000 },
  'server.requestTimeoutMs': { type: 'int', env: 'CYNODE_REQUEST_TIMEOUT_MS', min: 100, max: 600_000 },
  'server.maxBodyBytes': { type: 'int', env: 'CYNODE_MAX_BODY_BYTES', min: 1024, max: 104_857_600 },
  'server.readyCheckTimeoutMs': { type: 'int', env: 'CYNODE_READY_CHECK_TIMEOUT_MS', min: 50, max: 60_000 },
  'database.url': { type: 'string', env: 'DATABASE_URL', nullable: true, secret: true },
  'database.dataDir': { type: 'string', env: 'CYNODE_DATA_DIR' },
  'database.poolMax': { type: 'int', env: 'CYNODE_DATABASE_POOL_MAX', min: 1, max: 1000 },
  'database.connectTimeoutMs': { type: 'int', env: 'CYNODE_DATABASE_CONNECT_TIMEOUT_MS', min: 100, max: 120_000 },
  'database.startupTimeoutMs': { type: 'int', env: 'CYNODE_DATABASE_STARTUP_TIMEOUT_MS', min: 0, max: 600_000 },
  'policy.bundle': { type: 'string', env: 'CYNODE_BUNDLE' },
  'policy.bundleToken': { type: 'string', env: 'CYNODE_BUNDLE_TOKEN', nullable: true, secret: true },
  'policy.pollMinDelayMs': { type: 'int', env: 'CYNODE_BUNDLE_POLL_MIN_DELAY_MS', min: 100, max: 86_400_000 },
  'policy.pollMaxDelayMs': { type: 'int', env: 'CYNODE_BUNDLE_POLL_MAX_DELAY_MS', min: 100, max: 86_400_000 },
  'policy.longPollTimeoutMs': { type: 'int', env: 'CYNODE_BUNDLE_LONG_POLL_TIMEOUT_MS', min: 0, max: 3_600_000 },
  'policy.allowUnsigned': { type: 'bool', env: 'CYNODE_POLICY_ALLOW_UNSIGNED' },
  'policy.verificationKeysFile': { type: 'string', env: 'CYNODE_BUNDLE_VERIFICATION_KEYS_FILE', nullable: true },
  'policy.signingKeyFile': { type: 'string', env: 'CYNODE_BUNDLE_SIGNING_KEY_FILE', nullable: true },
  'policy.signingKeyId': { type: 'string', env: 'CYNODE_BUNDLE_SIGNING_KEY_ID' },
  'policy.signingAlgorithm': {
    type: 'enum',
    env: 'CYNODE_BUNDLE_SIGNING_ALGORITHM',
    values: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512'],
  },
  'policy.policiesDir': { type: 'string', env: 'CYNODE_POLICIES_DIR' },
  'policy.coverageThreshold': { type: 'int', env: 'CYNODE_POLICY_COVERAGE_THRESHOLD', min: 0, max: 100 },
  'decisionLog.maskPaths': { type: 'list', env: 'CYNODE_DECISION_LOG_MASK_PATHS' },
  'decisionLog.bufferSize': { type: 'int', env: 'CYNODE_DECISION_LOG_BUFFER_SIZE', min: 1, max: 1_000_000 },
  'decisionLog.flushIntervalMs': { type: 'int', env: 'CYNODE_DECISION_LOG_FLUSH_INTERVAL_MS', min: 1, max: 60_000 },
  'decisionLog.enqueueTimeoutMs': { type: 'int', env: 'CYNODE_DECISION_LOG_ENQUEUE_TIMEOUT_MS', min: 1, max: 60_000 },
  'auth.adminToken': { type: 'string', env: 'CYNODE_ADMIN_TOKEN', nullable: true, secret: true },
  'auth.adminTokenFile': { type: 'string', env: 'CYNODE_ADMIN_TOKEN_FILE' },
  'auth.bundleServiceToken': { type: 'string', env: 'CYNODE_BUNDLE_SERVICE_TOKEN', nullable: true, secret: true },
  'auth.keyRotationMs': { type: 'int', env: 'CYNODE_KEY_ROTATION_MS', min: 60_000, max: 31_536_000_000 },
  'auth.forwardTokenTtlMs': { type: 'int', env: 'CYNODE_FORWARD_TOKEN_TTL_MS', min: 1000, max: 600_000 },
  'auth.issuer': { type: 'string', env: 'CYNODE_AUTH_ISSUER' },
  'auth.workerTokenTtlMs': { type: 'int', env: 'CYNODE_WORKER_TOKEN_TTL_MS', min: 1000, max: 3_600_000 },
  'auth.pskFailureLimit': { type: 'int', env: 'CYNODE_PSK_FAILURE_LIMIT', min: 1, max: 10_000 },
  'auth.pskFailureWindowMs': { type: 'int', env: 'CYNODE_PSK_FAILURE_WINDOW_MS', min: 1000, max: 86_400_000 },
  'workers.pollIntervalMs': { type: 'int', env: 'CYNODE_WORKER_POLL_INTERVAL_MS', min: 100, max: 600_000 },
  'workers.heartbeatIntervalMs': { type: 'int', env: 'CYNODE_WORKER_HEARTBEAT_INTERVAL_MS', min: 100, max: 600_000 },
  'workers.nodeHoldMs': { type: 'int', env: 'CYNODE_WORKER_NODE_HOLD_MS', min: 1000, max: 86_400_000 },
  'jobs.leaseTtlMs': { type: 'int', env: 'CYNODE_JOB_LEASE_TTL_MS', min: 500, max: 3_600_000 },
  'jobs.longPollMaxMs': { type: 'int', env: 'CYNODE_JOB_LONG_POLL_MAX_MS', min: 0, max: 30_000 },
  'jobs.wakeFallbackMs': { type: 'int', env: 'CYNODE_JOB_WAKE_FALLBACK_MS', min: 50, max: 60_000 },
  'jobs.reaperIntervalMs': { type: 'int', env: 'CYNODE_JOB_REAPER_INTERVAL_MS', min: 50, max: 60_000 },
  'jobs.retryBaseMs': { type: 'int', env: 'CYNODE_JOB_RETRY_BASE_MS', min: 0, max: 3_600_000 },
  'jobs.retryMaxMs': { type: 'int', env: 'CYNODE_JOB_RETRY_MAX_MS', min: 0, max: 86_400_000 },
  'jobs.defaultMaxAttempts': { type: 'int', env: 'CYNODE_JOB_DEFAULT_MAX_ATTEMPTS', min: 1, max: 100 },
  'jobs.defaultTimeoutMs': { type: 'int', env: 'CYNODE_JOB_DEFAULT_TIMEOUT_MS', min: 1000, max: 86_400_000 },
  'jobs.claimCandidates': { type: 'int', env: 'CYNODE_JOB_CLAIM_CANDIDATES', min: 1, max: 1000 },
  'vault.masterKey': { type: 'string', env: 'CYNODE_MASTER_KEY', nullable: true, secret: true },
  'vault.masterKeyFile': { type: 'string', env: 'CYNODE_MASTER_KEY_FILE' },
  'vault.previousMasterKeys': { type: 'list', env: 'CYNODE_MASTER_KEY_PREVIOUS', secret: true },
  'egress.url': { type: 'string', env: 'CYNODE_EGRESS_URL', nullable: true },
  'egress.region': { type: 'string', env: 'CYNODE_EGRESS_REGION' },
  'egress.openaiBaseUrl': { type: 'string', env: 'CYNODE_OPENAI_BASE_URL' },
  'egress.anthropicBaseUrl': { type: 'string', env: 'CYNODE_ANTHROPIC_BASE_URL' },
  'egress.connectTimeoutMs': { type: 'int', env: 'CYNODE_EGRESS_CONNECT_TIMEOUT_MS', min: 100, max: 600_000 },
  'egress.idleTimeoutMs': { type: 'int', env: 'CYNODE_EGRESS_IDLE_TIMEOUT_MS', min: 100, max: 600_000 },
  'egress.maxRetries': { type: 'int', env: 'CYNODE_EGRESS_MAX_RETRIES', min: 0, max: 10 },
  'egress.maxRetryWaitMs': { type: 'int', env: 'CYNODE_EGRESS_MAX_RETRY_WAIT_MS', min: 0, max: 600_000 },
  'egress.reservationTtlMs': { type: 'int', env: 'CYNODE_EGRESS_RESERVATION_TTL_MS', min: 10_000, max: 86_400_000 },
  'egress.reaperIntervalMs': { type: 'int', env: 'CYNODE_EGRESS_REAPER_INTERVAL_MS', min: 100, max: 600_000 },
  'mcp.upstreams': { type: 'list', env: 'CYNODE_MCP_UPSTREAMS' },
  'mcp.stdioEnv': { type: 'list', env: 'CYNODE_MCP_STDIO_ENV', secret: true },
  'mcp.toolTimeoutMs': { type: 'int', env: 'CYNODE_MCP_TOOL_TIMEOUT_MS', min: 100, max: 600_000 },
  'mcp.maxArgumentBytes': { type: 'int', env: 'CYNODE_MCP_MAX_ARGUMENT_BYTES', min: 256, max: 104_857_600 },
  'mcp.maxResponseBytes': { type: 'int', env: 'CYNODE_MCP_MAX_RESPONSE_BYTES', min: 1024, max: 104_857_600 },
  'mcp.discoveryTtlMs': { type: 'int', env: 'CYNODE_MCP_DISCOVERY_TTL_MS', min: 0, max: 86_400_000 },
  'artifacts.port': { type: 'int', env: 'CYNODE_ARTIFACTS_PORT', min: 0, max: 65535 },
  'artifacts.gatewayUrl': { type: 'string', env: 'CYNODE_GATEWAY_URL' },
  'audit.bufferSize': { type: 'int', env: 'CYNODE_AUDIT_BUFFER_SIZE', min: 1, max: 1_000_000 },
  'audit.flushIntervalMs': { type: 'int', env: 'CYNODE_AUDIT_FLUSH_INTERVAL_MS', min: 1, max: 60_000 },
  'audit.enqueueTimeoutMs': { type: 'int', env: 'CYNODE_AUDIT_ENQUEUE_TIMEOUT_MS', min: 1, max: 60_000 },
  'log.level': {
    type: 'enum',
    env: 'CYNODE_LOG_LEVEL',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
  },
} as const satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof SCHEMA;

/** The validated configuration the composition root hands to every factory. */
export interface Config {
  server: {
    host: string;
    controlPort: number;
    mcpPort: number;
    egressPort: number;
    shutdownTimeoutMs: number;
    requestTimeoutMs: number;
    readyCheckTimeoutMs: number;
    maxBodyBytes: number;
  };
  database: {
    /** PostgreSQL URL, or null for the embedded database. Holds a password: never log it. */
    url: string | null;
    dataDir: string;
    poolMax: number;
    connectTimeoutMs: number;
    startupTimeoutMs: number;
  };
  policy: {
    /** A bundle file path, or an http(s) URL of an OPA Bundle Service. */
    bundle: string;
    bundleToken: string | null;
    pollMinDelayMs: number;
    pollMaxDelayMs: number;
    longPollTimeoutMs: number;
    allowUnsigned: boolean;
    verificationKeysFile: string | null;
    signingKeyFile: string | null;
    signingKeyId: string;
    signingAlgorithm: string;
    policiesDir: string;
    coverageThreshold: number;
  };
  decisionLog: { maskPaths: string[]; bufferSize: number; flushIntervalMs: number; enqueueTimeoutMs: number };
  auth: {
    /** The bootstrap admin/orchestrator bearer token; null reads (or creates) `adminTokenFile`. */
    adminToken: string | null;
    adminTokenFile: string;
    bundleServiceToken: string | null;
    keyRotationMs: number;
    forwardTokenTtlMs: number;
    /** `iss` of every gateway-issued JWT. */
    issuer: string;
    workerTokenTtlMs: number;
    pskFailureLimit: number;
    pskFailureWindowMs: number;
  };
  workers: { pollIntervalMs: number; heartbeatIntervalMs: number; nodeHoldMs: number };
  jobs: {
    leaseTtlMs: number;
    longPollMaxMs: number;
    wakeFallbackMs: number;
    reaperIntervalMs: number;
    retryBaseMs: number;
    retryMaxMs: number;
    defaultMaxAttempts: number;
    defaultTimeoutMs: number;
    claimCandidates: number;
  };
  vault: {
    /** The credential master key (base64, 32 bytes); null reads (or creates) `masterKeyFile`. Never log it. */
    masterKey: string | null;
    masterKeyFile: string;
    /** Earlier master keys (base64), still able to unwrap until `credentials rewrap` has moved everything. */
    previousMasterKeys: string[];
  };
  egress: {
    /** Where the control plane forwards allowed calls; null: this host's egress port. */
    url: string | null;
    /** The region direct routing (Option C) calls originate from, for the policy's regional rules. */
    region: string;
    openaiBaseUrl: string;
    anthropicBaseUrl: string;
    connectTimeoutMs: number;
    idleTimeoutMs: number;
    maxRetries: number;
    maxRetryWaitMs: number;
    /** A reservation nobody settled within this long is charged in full (the call's replica died). */
    reservationTtlMs: number;
    reaperIntervalMs: number;
  };
  mcp: {
    /** Upstream MCP servers, `name=url`: the only addresses tool calls are ever routed to. */
    upstreams: string[];
    /** `NAME=value` pairs stdio upstreams get on top of the SDK's safe defaults; may hold secrets. */
    stdioEnv: string[];
    toolTimeoutMs: number;
    maxArgumentBytes: number;
    maxResponseBytes: number;
    discoveryTtlMs: number;
  };
  /** The reference upstream tool server (`cynode-gateway artifact-server`). */
  artifacts: { port: number; gatewayUrl: string };
  audit: { bufferSize: number; flushIntervalMs: number; enqueueTimeoutMs: number };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
}
