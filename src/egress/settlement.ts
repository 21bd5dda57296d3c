import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { type Periodic, startPeriodic } from '../lib/periodic.js';
import type { Logger } from '../logging/index.js';
import type { BlockAdmission } from './blocks.js';
import type { Ledger } from './ledger.js';

/**
 * Settlement runs after the answer is sent: until it lands, the call's worst case stays
 * reserved, so other calls see less budget, never more. If it cannot land (the database is
 * down, the process dies), the reservation lapses and is charged in full by the reaper.
 */
export interface Settlements {
  /** Starts settling `requestId` without waiting for it. */
  later(requestId: string, costUsd: number, state: 'settled' | 'released', tokenRefund: number): void;
  /** Resolves once every settlement started so far has landed (shutdown, tests). */
  settled(): Promise<void>;
  /** Charges lapsed reservations every `intervalMs`. */
  startReaper(intervalMs: number): Periodic;
}

/** Settlements against `ledger` (or the prepaid block a call drew from), failures logged on `log`. */
export function createSettlements(ledger: Ledger, log: Logger, blocks?: BlockAdmission): Settlements {
  const settling = new Set<Promise<unknown>>();
  return {
    later(requestId, costUsd, state, tokenRefund) {
      if (blocks?.settle(requestId, costUsd, state, tokenRefund)) return;
      const p = ledger
        .settle(requestId, costUsd, state, tokenRefund)
        .catch((err: unknown) =>
          log.error({ requestId, err: errorMessage(err) }, 'settling a reservation failed; it will be charged in full when it lapses'),
        )
        .finally(() => settling.delete(p));
      settling.add(p);
    },
    async settled() {
      while (settling.size > 0) await Promise.all([...settling]);
    },
    startReaper: (intervalMs) => {
      const failures = createLogThrottle(log);
      return startPeriodic(
        () => ledger.reap().then((n) => n > 0 && log.warn({ lapsed: n }, 'unsettled reservations lapsed and were charged in full')),
        intervalMs,
        (err) => failures.failure({ err: errorMessage(err) }, 'reservation reaper failed'),
        () => failures.recovered('reservation reaper works again'),
      );
    },
  };
}
