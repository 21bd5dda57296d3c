import type { DecisionEvent } from '../decisions/index.js';

/** A buffered decision and, once encoded for an upload, its JSON (encoded once, however often retried). */
export interface BufferedEvent {
  event: DecisionEvent;
  json?: string;
}

/** Why an export copy was dropped. */
export type DropReason = 'buffer_full' | 'oversized' | 'shutdown';

/** The exporter's bounded queue, oldest first. */
export interface ExportBuffer {
  readonly length: number;
  /** Adds one event at the tail; past the limit the oldest go. */
  push(event: DecisionEvent): void;
  /** Removes up to `count` events from the head (the oldest) for an upload. */
  take(count: number): BufferedEvent[];
  /** Puts events back at the head, in their order (an upload failed, or did not need them); past the limit the oldest go. */
  putBack(entries: BufferedEvent[]): void;
  /** Empties the buffer, counting what was in it as dropped for `reason`. */
  dropAll(reason: DropReason): number;
}

/**
 * A queue of at most `limit` events that drops from the head when full: under pressure the
 * export keeps the newest copies, and every drop is reported to `onDrop` to be counted.
 */
export function createExportBuffer(limit: number, onDrop: (count: number, reason: DropReason) => void): ExportBuffer {
  let entries: BufferedEvent[] = [];
  const trim = () => {
    const over = entries.length - limit;
    if (over > 0) {
      entries.splice(0, over);
      onDrop(over, 'buffer_full');
    }
  };
  return {
    get length() {
      return entries.length;
    },
    push(event) {
      entries.push({ event });
      trim();
    },
    take: (count) => entries.splice(0, count),
    putBack(back) {
      if (back.length === 0) return;
      entries = back.concat(entries);
      trim();
    },
    dropAll(reason) {
      const count = entries.length;
      entries = [];
      if (count > 0) onDrop(count, reason);
      return count;
    },
  };
}
