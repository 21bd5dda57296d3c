import type { SseEvent } from './types.js';

/** One event of a stream as it was sent: its exact text (blank line included) and its fields. */
export interface RawSseEvent extends SseEvent {
  /** The event's text as the provider sent it, up to and including the blank line that ends it. */
  raw: string;
  /** False for an event with no `data:` line (a comment, a keep-alive): its `data` is empty. */
  carriesData: boolean;
}

// The end of an event: a blank line, whichever line endings the sender uses (a CRLF is one
// line ending, never a CR and then an LF).
const EVENT_END = /(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))/;

/** The `event:` and `data:` fields of one event's lines (comments and unknown fields ignored). */
function fieldsOf(block: string): SseEvent | undefined {
  let event: string | undefined;
  const data: string[] = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return data.length > 0 ? { event, data: data.join('\n') } : undefined;
}

function rawEvent(raw: string): RawSseEvent {
  const fields = fieldsOf(raw);
  return fields ? { raw, ...fields, carriesData: true } : { raw, event: undefined, data: '', carriesData: false };
}

/**
 * Splits a `text/event-stream` body into its events, each with its exact text, so a relay can
 * pass an event on byte for byte. An event without data (a comment, a keep-alive) comes with
 * empty `data` and `event` undefined. The WHATWG rules that matter here apply: `event:` and
 * `data:` fields, multi-line data joined by newlines, a blank line ends an event; text after
 * the last blank line is an event of its own.
 */
export async function* sseEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<RawSseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  const take = function* (final: boolean): Generator<RawSseEvent> {
    for (;;) {
      const end = EVENT_END.exec(buffer);
      // A lone CR at the end may be the first half of a CRLF still to come.
      if (!end || (!final && end.index + end[0].length === buffer.length && buffer.endsWith('\r'))) break;
      const raw = buffer.slice(0, end.index + end[0].length);
      buffer = buffer.slice(raw.length);
      yield rawEvent(raw);
    }
  };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    yield* take(false);
  }
  buffer += decoder.decode();
  yield* take(true);
  if (buffer) {
    const raw = buffer;
    buffer = '';
    yield rawEvent(raw);
  }
}

/** The data of one event's text (its `data:` lines joined), or undefined when it has none. */
export const dataOf = (raw: string): string | undefined => fieldsOf(raw)?.data;

/** The events of a stream that carry data, fields only (what an adapter folds a stream from). */
export async function* parseSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  for await (const e of sseEvents(body)) if (e.carriesData) yield { event: e.event, data: e.data };
}
