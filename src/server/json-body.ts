import type { Context } from 'koa';
import { GatewayError } from '../errors/index.js';

/**
 * Reads and parses a JSON request body: `application/json` only (415), at most `limitBytes`
 * (413, checked on Content-Length and while streaming), valid JSON (400 invalid_json) that the
 * gateway can store and evaluate (400 bad_request, see `parseJsonBody`).
 */
export async function readJson(ctx: Context, limitBytes: number): Promise<unknown> {
  if (!ctx.is('application/json')) {
    throw new GatewayError('unsupported_media_type', 'send the body as application/json');
  }
  const body = await readRaw(ctx, limitBytes);
  const charset = ctx.request.charset;
  if (charset && !/^utf-?8$/i.test(charset)) throw new GatewayError('unsupported_media_type', 'the body must be UTF-8');
  return parseJsonBody(body);
}

/** How deep a request body may nest; deeper values would overflow the recursive code (and PostgreSQL's jsonb) downstream. */
export const MAX_JSON_DEPTH = 128;
// NUL cannot be stored in PostgreSQL text or jsonb, and an unpaired surrogate is no Unicode text
// at all (the policy's JSON parser refuses it): either would fail far from the door, after the
// request was acted on, and a decision-log batch holding one could never be written.
const UNSTORABLE = /\0|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Parses a UTF-8 JSON body (400 invalid_json) and refuses, with 400 bad_request, a value nested
 * deeper than `MAX_JSON_DEPTH` or holding a string or key with NUL or an unpaired surrogate.
 */
export function parseJsonBody(body: Buffer): unknown {
  const text = body.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new GatewayError('invalid_json', 'the body is not valid JSON');
  }
  if (!mayBeUnstorable(text)) return value;
  // Iterative on purpose: the value may be nested far deeper than the call stack.
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === 'string') {
      if (UNSTORABLE.test(v)) throw new GatewayError('bad_request', 'the body holds a NUL character or an unpaired surrogate');
    } else if (v !== null && typeof v === 'object') {
      if (depth > MAX_JSON_DEPTH) throw new GatewayError('bad_request', `the body nests deeper than ${MAX_JSON_DEPTH} levels`);
      if (Array.isArray(v)) for (const item of v) stack.push([item, depth + 1]);
      else for (const [key, item] of Object.entries(v)) stack.push([key, depth], [item, depth + 1]);
    }
  }
  return value;
}

// Valid JSON text can hold a NUL or a lone surrogate only as a \u escape (raw control characters
// are not JSON, and UTF-8 decoding never yields a surrogate), and cannot nest deeper than it
// has brackets: a body with neither such an escape nor more than MAX_JSON_DEPTH brackets passes
// without a walk over the parsed value. Anything else (even a false alarm such as an escaped
// backslash before "u0000") gets the full walk.
const SUSPECT_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;
// Nesting deeper than MAX_JSON_DEPTH takes more than twice as many characters.
const SHORT_ENOUGH = 2 * MAX_JSON_DEPTH + 1;

function mayBeUnstorable(text: string): boolean {
  if (SUSPECT_ESCAPE.test(text)) return true;
  if (text.length <= SHORT_ENOUGH) return false;
  const squares = countUpTo(text, '[', MAX_JSON_DEPTH + 1);
  return squares + countUpTo(text, '{', MAX_JSON_DEPTH + 1 - squares) > MAX_JSON_DEPTH;
}

// How many times `char` occurs in `text`, counting no further than `max` (jumps with indexOf).
function countUpTo(text: string, char: string, max: number): number {
  let n = 0;
  for (let at = text.indexOf(char); at !== -1 && n < max; at = text.indexOf(char, at + 1)) n++;
  return n;
}

/** Reads a request body of at most `limitBytes` (413, checked on Content-Length and while streaming). */
export async function readRaw(ctx: Context, limitBytes: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limitBytes) {
    ctx.set('Connection', 'close');
    throw new GatewayError('payload_too_large', `the body exceeds ${limitBytes} bytes`);
  }
  return new Promise<Buffer>((resolve, reject) => {
    const req = ctx.req;
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        cleanup();
        req.pause();
        ctx.set('Connection', 'close'); // stop reading; the answer still reaches the client
        reject(new GatewayError('payload_too_large', `the body exceeds ${limitBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    // A client that goes away mid-body ends the read as the async iterator did: with an error.
    const onClose = () => {
      if (req.complete) return;
      cleanup();
      reject(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}
