import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/lib/package-root.js';
import { TEST_ADMIN_TOKEN, tempDir } from './config.js';

/** A gateway process started through the real CLI. */
export interface GatewayProcess {
  child: ChildProcess;
  /** Bound port per role, from the `gateway ready` log line. */
  ports: Record<string, number>;
  /** Everything written so far to stdout and stderr. */
  output(): string;
  /** Resolves with the exit code once the process ends. */
  exited: Promise<number | null>;
}

/**
 * The CLI as the tests run it: the TypeScript source through tsx. With CYNODE_TEST_CLI=dist,
 * the compiled build as it is deployed (`node dist/src/cli/main.js`): the benchmarks measure that.
 */
export function cliArgs(...args: string[]): string[] {
  if (process.env.CYNODE_TEST_CLI === 'dist') return [join(packageRoot(), 'dist', 'src', 'cli', 'main.js'), ...args];
  return ['--import', 'tsx', join(packageRoot(), 'src', 'cli', 'main.ts'), ...args];
}

/** Runs a CLI command to completion; returns its exit code and output. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cliArgs(...args), { cwd: packageRoot(), env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

/**
 * Starts `cynode-gateway serve` and waits for its `gateway ready` line (or its exit).
 * Ports default to 0 so parallel test files never collide. `nodeArgs` go to node itself
 * (the benchmarks' `--cpu-prof`, which NODE_OPTIONS does not take).
 */
export function startGatewayProcess(env: Record<string, string>, args: string[] = [], nodeArgs: string[] = []): Promise<GatewayProcess> {
  const child = spawn(process.execPath, [...nodeArgs, ...cliArgs('serve', ...args)], {
    cwd: packageRoot(),
    env: {
      ...process.env,
      CYNODE_CONTROL_PORT: '0',
      CYNODE_MCP_PORT: '0',
      CYNODE_EGRESS_PORT: '0',
      CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      CYNODE_MASTER_KEY_FILE: join(tempDir('cynode-vault-'), 'master-key'),
      CYNODE_POLICY_ALLOW_UNSIGNED: 'true',
      ...env,
    },
  });
  let out = '';
  // Exit is awaited by tests; a process that does not end within a minute is killed and
  // reported as such (-1), so a hang fails its test instead of stalling the suite.
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => resolve(code));
  });
  const bounded = (): Promise<number | null> => {
    const watchdog = setTimeout(() => child.kill('SIGKILL'), 60_000);
    return exited.then((code) => {
      clearTimeout(watchdog);
      return code ?? -1;
    });
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway not ready within 60 s:\n${out}`));
    }, 60_000);
    const onData = (chunk: string) => {
      out += chunk;
      for (const line of out.split('\n')) {
        if (!line.includes('"gateway ready"')) continue;
        const ready = JSON.parse(line) as { listening: { role: string; port: number }[] };
        clearTimeout(timer);
        resolve({
          child,
          ports: Object.fromEntries(ready.listening.map((l) => [l.role, l.port])),
          output: () => out,
          get exited() {
            return bounded();
          },
        });
        return;
      }
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before ready:\n${out}`));
    });
  });
}
