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

/** A running listener: more channels can be added while it runs; `close` ends it. */
export interface ChannelListener {
  /** Listens on `channel` too (now, if connected, and after every reconnect); several parts may listen on one channel, each is told. */
  on(channel: string, handler: (payload?: string) => void): void;
  /** Whether `channel`'s notifications reach this replica now: connected, and its LISTEN done on this connection. */
  listening(channel: string): boolean;
  close(): Promise<void>;
}

/**
 * One dedicated connection that LISTENs on every channel the gateway cares about (settings,
 * preferences, jobs), reconnecting with backoff. After a reconnect every handler runs once,
 * so whatever changed while the connection was down is caught up. Handlers must be cheap
 * and must not throw; each service keeps its own polling fallback.
 */
export function listenChannels(options: ListenOptions): ChannelListener {
  const log = options.logger.child({ component: 'listen' });
  const channels: ChannelHandlers = { ...options.channels };
  const failures = createLogThrottle(log);
  let closed = false;
  let client: pg.Client | undefined;
  // The channels LISTENed on `client`, the current connection.
  let listening = new Set<string>();
  // LISTENs sent on the current connection after it started, one at a time (pg queues them, and warns).
  let listens: Promise<unknown> = Promise.resolve();
  let retry: NodeJS.Timeout | undefined;
  const all = () => Object.values(channels).forEach((fn) => fn());

  const connect = async (attempt: number) => {
    if (closed || !options.url) return;
    const c = new pg.Client({ connectionString: options.url, application_name: 'cynode-gateway-listen' });
    c.on('error', () => undefined);
    try {
      await c.connect();
      const listened = new Set<string>();
      // Channels added while this loop runs are picked up by its next round.
      for (let pending = Object.keys(channels); pending.length > 0; pending = Object.keys(channels).filter((ch) => !listened.has(ch))) {
        for (const channel of pending) {
          await c.query(`LISTEN ${channel}`);
          listened.add(channel);
        }
      }
      c.on('notification', (msg) => channels[msg.channel]?.(msg.payload));
      // Only a connection that got as far as listening reconnects on 'end': a failed attempt
      // also ends, and retrying from both places would double the attempts every round.
      c.on('end', () => {
        client = undefined;
        listening = new Set();
        if (closed) return;
        retry = setTimeout(() => void connect(1), 1000);
      });
      client = c;
      listening = listened;
      listens = Promise.resolve();
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
    on(channel, handler) {
      if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`not a channel name: ${channel}`);
      const known = channel in channels;
      const before = channels[channel];
      channels[channel] = before
        ? (payload) => {
            before(payload);
            handler(payload);
          }
        : handler;
      const c = client;
      if (known || !c) return;
      // A failure ends the connection; the reconnect listens again.
      listens = listens
        .then(() => c.query(`LISTEN ${channel}`))
        .then(
          () => client === c && listening.add(channel),
          () => undefined,
        );
    },
    listening: (channel) => client !== undefined && listening.has(channel),
    async close() {
      closed = true;
      clearTimeout(retry);
      await client?.end().catch(() => undefined);
    },
  };
}
