import pg from 'pg';
import type { Logger } from '../logging/index.js';
import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';

/** A NOTIFY channel and what to do when it fires (also called after every reconnect). */
export type ChannelHandlers = Record<string, (payload?: string) => void>;

/** Options of the channel listener. */
export interface ListenOptions {
  /** PostgreSQL URL to LISTEN on; null (embedded database) listens to nothing. */
  url: string | null;
  channels: ChannelHandlers;
  logger: Logger;
}

/**
 * One dedicated connection that LISTENs on every channel the gateway cares about (settings,
 * preferences, jobs), reconnecting with backoff. After a reconnect every handler runs once,
 * so whatever changed while the connection was down is caught up. Handlers must be cheap
 * and must not throw; each service keeps its own polling fallback.
 */
export function listenChannels(options: ListenOptions): { close(): Promise<void> } {
  const log = options.logger.child({ component: 'listen' });
  const failures = createLogThrottle(log);
  let closed = false;
  let client: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  const all = () => Object.values(options.channels).forEach((fn) => fn());

  const connect = async (attempt: number) => {
    if (closed || !options.url) return;
    const c = new pg.Client({ connectionString: options.url, application_name: 'cynode-gateway-listen' });
    c.on('error', () => undefined);
    try {
      await c.connect();
      for (const channel of Object.keys(options.channels)) await c.query(`LISTEN ${channel}`);
      c.on('notification', (msg) => options.channels[msg.channel]?.(msg.payload));
      // Only a connection that got as far as listening reconnects on 'end': a failed attempt
      // also ends, and retrying from both places would double the attempts every round.
      c.on('end', () => {
        if (closed) return;
        client = undefined;
        retry = setTimeout(() => void connect(1), 1000);
      });
      client = c;
      if (attempt > 1) failures.recovered('listening for changes again');
      all();
    } catch (err) {
      await c.end().catch(() => undefined);
      if (closed) return;
      failures.failure({ attempt, err: errorMessage(err) }, 'cannot LISTEN; polling meanwhile');
      retry = setTimeout(() => void connect(attempt + 1), Math.min(30_000, 500 * 2 ** attempt));
    }
  };
  void connect(1);

  return {
    async close() {
      closed = true;
      clearTimeout(retry);
      await client?.end().catch(() => undefined);
    },
  };
}
