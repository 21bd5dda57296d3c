import { Writable } from 'node:stream';
import pino from 'pino';
import { createLogger, type Logger } from '../../src/logging/index.js';
import { startGateway, type Gateway } from '../../src/main.js';
import type { Listening } from '../../src/server/listen.js';
import { ROLES, type Role } from '../../src/server/roles.js';
import { testConfig } from './config.js';

/** An in-process gateway on loopback, with its control-plane URL. */
export interface TestGateway {
  gateway: Gateway;
  url: (role?: Role) => string;
}

/** Starts an in-process gateway (real config loader, real database, ports 0). */
export async function startTestGateway(
  env: Record<string, string>,
  roles: readonly Role[] = ROLES,
  logger: Logger = pino({ level: 'silent' }),
): Promise<TestGateway> {
  const gateway = await startGateway({ config: testConfig(env), logger, roles });
  const url = (role: Role = roles[0]!) => listeningUrl(gateway.listening, role);
  return { gateway, url };
}

/** The base URL of `role`'s listener on loopback: https when it serves TLS. */
export function listeningUrl(listening: readonly Listening[], role: Role): string {
  const l = listening.find((x) => x.role === role)!;
  return `${l.protocol}://127.0.0.1:${l.port}`;
}

/** The gateway's real logger (with its redaction), writing every line into `lines`. */
export function captureLogger(): { lines: string[]; logger: Logger } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'debug', destination }) };
}
