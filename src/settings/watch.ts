import pg from 'pg';
import type { Logger } from '../logging/index.js';
import { SETTINGS_CHANNEL, type SettingsService } from './service.js';

/** Options of the settings watcher. */
export interface WatchOptions {
  /** PostgreSQL URL to LISTEN on; null (embedded database) polls only. */
  url: string | null;
  settings: SettingsService;
  logger: Logger;
  /** Fallback poll, so a missed notification still lands within this long. */
  pollIntervalMs: number;
}

/**
 * Keeps this replica's runtime data current: LISTEN on PostgreSQL for changes made by any
 * replica (reconnecting with backoff), and poll as the fallback.
 */
export function watchSettings(options: WatchOptions): { close(): Promise<void> } {
  const log = options.logger.child({ component: 'settings-watch' });
  let closed = false;
  let client: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  const refresh = () => {
    options.settings.refresh().catch((err: unknown) => log.warn({ err: String((err as Error)?.message ?? err) }, 'settings refresh failed'));
  };
  const poll = setInterval(refresh, options.pollIntervalMs);
  poll.unref();

  const listen = async (attempt: number) => {
    if (closed || !options.url) return;
    const c = new pg.Client({ connectionString: options.url, application_name: 'cynode-gateway-listen' });
    c.on('error', () => undefined);
    c.on('end', () => {
      if (closed) return;
      client = undefined;
      retry = setTimeout(() => void listen(1), 1000);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${SETTINGS_CHANNEL}`);
      c.on('notification', refresh);
      client = c;
      if (attempt > 1) log.info('listening for settings changes again');
      refresh(); // catch up on whatever changed while disconnected
    } catch (err) {
      await c.end().catch(() => undefined);
      if (closed) return;
      log.warn({ attempt, err: String((err as Error)?.message ?? err) }, 'cannot LISTEN for settings; polling meanwhile');
      retry = setTimeout(() => void listen(attempt + 1), Math.min(30_000, 500 * 2 ** attempt));
    }
  };
  void listen(1);

  return {
    async close() {
      closed = true;
      clearInterval(poll);
      clearTimeout(retry);
      await client?.end().catch(() => undefined);
    },
  };
}
