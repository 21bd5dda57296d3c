import type { AgentConfig } from './agent.js';
import { checkGatewayUrl, type GatewayTransport, GatewayTransportError, readGatewayTransport } from '../lib/gateway-transport.js';

/**
 * The reference cloud worker's configuration: exactly the README's Example 1 variables, plus
 * documented extras for the rest of the capability report and the loop.
 */
export interface WorkerConfig {
  orchUrl: string;
  nodeId: string;
  psk: string;
  report: Record<string, unknown>;
  /** How long one poll may wait for work. */
  pollWaitMs: number;
  /** The CAs it trusts, the client certificate it presents, whether plain HTTP off this machine is allowed. */
  transport: GatewayTransport;
  /** How it runs `agent` jobs (`CYNODE_AGENT_COMMAND`); absent: it runs none. */
  agent?: AgentConfig;
}

/** A missing or malformed variable, named. */
export class WorkerConfigError extends Error {}

const list = (v: string | undefined) =>
  (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Reads the worker's configuration from the environment; throws naming the first bad variable. */
export function readWorkerConfig(env: NodeJS.ProcessEnv): WorkerConfig {
  const required = (name: string) => {
    const v = env[name]?.trim();
    if (!v) throw new WorkerConfigError(`${name} is required`);
    return v;
  };
  const int = (name: string, fallback: number | undefined, min: number, max: number) => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw new WorkerConfigError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
  const orchUrl = required('CYNODE_ORCH_URL').replace(/\/+$/, '');
  if (!/^https?:\/\/[^\s]+$/.test(orchUrl)) throw new WorkerConfigError('CYNODE_ORCH_URL must be an http(s) URL');
  const transport = readTransport(env, orchUrl);
  const nodeId = required('CYNODE_NODE_ID');
  const psk = required('CYNODE_REGISTER_PSK');
  const providers = list(env.CYNODE_CAP_SUPPORTED_PROVIDERS);
  const rpm = int('CYNODE_CAP_RATE_LIMIT_RPM', undefined, 1, 1e9);
  const tpm = int('CYNODE_CAP_RATE_LIMIT_TPM', undefined, 1, 1e9);
  const region = env.CYNODE_CAP_REGION?.trim();
  const provider = env.CYNODE_CAP_PROVIDER?.trim();
  const report = {
    node_id: nodeId,
    labels: list(env.CYNODE_LABELS),
    ...(region && { region }),
    ...(provider && { provider }),
    inference_mode: env.CYNODE_CAP_INFERENCE_MODE?.trim() || (providers.length > 0 ? 'provider_api' : 'ollama_remote'),
    supported_providers: providers,
    supported_models: list(env.CYNODE_CAP_SUPPORTED_MODELS),
    max_concurrency: int('CYNODE_CAP_MAX_CONCURRENCY', 4, 1, 1024),
    rate_limits: { ...(rpm && { rpm }), ...(tpm && { tpm }) },
    reachable_endpoints: env.CYNODE_CAP_REACHABLE_ENDPOINTS ? list(env.CYNODE_CAP_REACHABLE_ENDPOINTS) : [orchUrl],
  };
  const agent = readAgent(env, orchUrl, transport, int('CYNODE_AGENT_MAX_OUTPUT_BYTES', 1_048_576, 1, 64 * 1_048_576)!);
  return {
    orchUrl,
    nodeId,
    psk,
    report,
    pollWaitMs: int('CYNODE_WORKER_POLL_WAIT_MS', 25_000, 0, 30_000)!,
    transport,
    ...(agent && { agent }),
  };
}

/**
 * `CYNODE_AGENT_COMMAND`: a JSON list (`["node","agent.mjs"]`) or words split on spaces, run
 * without a shell; `CYNODE_MCP_URL`: the MCP gateway (default: the control plane's host on
 * port 12083, the MCP port).
 */
function readAgent(env: NodeJS.ProcessEnv, orchUrl: string, transport: GatewayTransport, maxOutputBytes: number): AgentConfig | undefined {
  const raw = env.CYNODE_AGENT_COMMAND?.trim();
  if (!raw) return undefined;
  let command: unknown = raw.split(/\s+/);
  if (raw.startsWith('[')) {
    try {
      command = JSON.parse(raw);
    } catch {
      throw new WorkerConfigError('CYNODE_AGENT_COMMAND must be a JSON list of strings or words separated by spaces');
    }
  }
  if (!Array.isArray(command) || command.length === 0 || !command.every((c) => typeof c === 'string' && c !== ''))
    throw new WorkerConfigError('CYNODE_AGENT_COMMAND must be a JSON list of strings or words separated by spaces');
  const fallback = new URL(orchUrl);
  fallback.port = '12083';
  const mcpUrl = (env.CYNODE_MCP_URL?.trim() || fallback.origin).replace(/\/+$/, '');
  if (!/^https?:\/\/[^\s]+$/.test(mcpUrl)) throw new WorkerConfigError('CYNODE_MCP_URL must be an http(s) URL');
  try {
    checkGatewayUrl(mcpUrl, transport.allowInsecure, 'CYNODE_MCP_URL');
  } catch (err) {
    if (err instanceof GatewayTransportError) throw new WorkerConfigError(err.message);
    throw err;
  }
  return { command: command as string[], mcpUrl, maxOutputBytes };
}

/** `CYNODE_CA_FILE`, the client certificate pair and `CYNODE_ALLOW_INSECURE`, checked against the URL before any connection. */
function readTransport(env: NodeJS.ProcessEnv, orchUrl: string): GatewayTransport {
  const insecure = env.CYNODE_ALLOW_INSECURE?.trim();
  if (insecure && insecure !== 'true' && insecure !== 'false') throw new WorkerConfigError('CYNODE_ALLOW_INSECURE must be true or false');
  try {
    const transport = readGatewayTransport({
      caFile: env.CYNODE_CA_FILE?.trim(),
      certFile: env.CYNODE_CLIENT_CERT_FILE?.trim(),
      keyFile: env.CYNODE_CLIENT_KEY_FILE?.trim(),
      allowInsecure: insecure === 'true',
    });
    checkGatewayUrl(orchUrl, transport.allowInsecure, 'CYNODE_ORCH_URL');
    return transport;
  } catch (err) {
    if (err instanceof GatewayTransportError) throw new WorkerConfigError(err.message);
    throw err;
  }
}
