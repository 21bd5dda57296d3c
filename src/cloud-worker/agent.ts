import { spawn } from 'node:child_process';
import { ApiError } from './client.js';
import type { JobContext, JobOutcome } from './executors.js';

/** How the worker runs `agent` jobs: a command of its own configuration, and where the agent reaches the gateway. */
export interface AgentConfig {
  /** The program and its arguments (no shell). Never taken from a job. */
  command: readonly string[];
  /** The MCP gateway's base URL (its port serves `/mcp` and the drop-in model APIs). */
  mcpUrl: string;
  /** The most of the agent's stdout kept as its result. */
  maxOutputBytes: number;
}

/** Variables of the worker's own environment an agent inherits; nothing else (the PSK above all) is passed on. */
const INHERITED = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR', 'TZ', 'NODE_OPTIONS', 'NODE_PATH'];
/** After SIGTERM, the agent has this long before SIGKILL. */
const KILL_GRACE_MS = 2000;

const failed = (code: string, message: string, retryable: boolean): JobOutcome => ({
  status: 'failed',
  error: { code, message, retryable },
});

/**
 * Runs an `agent` job: asks the gateway for a fresh agent token bound to the job, then runs
 * the configured command with the SDKs' own variables pointed at the gateway
 * (`OPENAI_BASE_URL`, `OPENAI_API_KEY`, `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`, and
 * `CYNODE_MCP_URL`), `payload.input` as JSON on stdin, and stdout as the result (JSON when it
 * parses, else `{output}`). The agent is killed when the job is stopped (lease lost, cancelled,
 * shutdown). Its token is scrubbed from whatever it prints.
 */
export async function runAgent(job: JobContext, agent: AgentConfig | undefined): Promise<JobOutcome> {
  if (!agent) return failed('unsupported_job_kind', 'this worker has no agent command configured (CYNODE_AGENT_COMMAND)', false);
  let token: string;
  try {
    const issued = await job.client.call<{ token: string }>('/v1/agent-tokens', {
      method: 'POST',
      body: { agent_type: 'sandbox', job_id: job.jobId },
      signal: job.signal,
    });
    token = issued.token;
  } catch (err) {
    if (err instanceof ApiError) return failed(err.code, err.message, err.status === 429 || err.status >= 500);
    throw err;
  }
  const base = agent.mcpUrl.replace(/\/+$/, '');
  const env: NodeJS.ProcessEnv = {
    ...Object.fromEntries(INHERITED.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]])),
    OPENAI_BASE_URL: `${base}/openai/v1`,
    OPENAI_API_KEY: token,
    ANTHROPIC_BASE_URL: `${base}/anthropic`,
    ANTHROPIC_API_KEY: token,
    CYNODE_MCP_URL: `${base}/mcp`,
    CYNODE_JOB_ID: job.jobId,
    CYNODE_TASK_ID: job.taskId,
  };
  const { code, stdout, stderr, truncated } = await spawnAgent(agent, env, JSON.stringify(job.payload.input ?? null), job.signal);
  const scrub = (s: string) => s.split(token).join('[REDACTED]');
  if (job.signal.aborted) return failed('agent_stopped', 'the agent was stopped with its job', true);
  if (code !== 0) return failed('agent_failed', `the agent exited with ${code}: ${scrub(stderr).slice(-500)}`, false);
  if (truncated) return failed('agent_output_too_large', `the agent printed more than ${agent.maxOutputBytes} bytes`, false);
  const text = scrub(stdout);
  try {
    return { status: 'succeeded', result: JSON.parse(text) as unknown };
  } catch {
    return { status: 'succeeded', result: { output: text } };
  }
}

/** Runs the agent to its end (or kills it when `signal` aborts); stdout kept up to the cap, the end of stderr. */
function spawnAgent(
  agent: AgentConfig,
  env: NodeJS.ProcessEnv,
  input: string,
  signal: AbortSignal,
): Promise<{ code: number | null; stdout: string; stderr: string; truncated: boolean }> {
  return new Promise((resolve) => {
    const [program, ...args] = agent.command;
    const child = spawn(program!, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let size = 0;
    let truncated = false;
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      if (size + c.length > agent.maxOutputBytes) truncated = true;
      else out.push(c);
      size += c.length;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4096)));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    let killer: NodeJS.Timeout | undefined;
    const stop = () => {
      child.kill('SIGTERM');
      killer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    const finish = (code: number | null) => {
      clearTimeout(killer);
      signal.removeEventListener('abort', stop);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr, truncated });
    };
    child.on('error', (err) => {
      stderr += String(err.message);
      finish(-1);
    });
    child.on('close', (code) => finish(code));
  });
}
