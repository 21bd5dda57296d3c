import type { Context } from 'koa';
import { GatewayError } from '../errors/index.js';

/**
 * Reads and parses a JSON request body: `application/json` only (415), at most `limitBytes`
 * (413, checked on Content-Length and while streaming), valid JSON (400 invalid_json).
 */
export async function readJson(ctx: Context, limitBytes: number): Promise<unknown> {
  if (!ctx.is('application/json')) {
    throw new GatewayError('unsupported_media_type', 'send the body as application/json');
  }
  const body = await readRaw(ctx, limitBytes);
  const charset = ctx.request.charset;
  if (charset && !/^utf-?8$/i.test(charset)) throw new GatewayError('unsupported_media_type', 'the body must be UTF-8');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new GatewayError('invalid_json', 'the body is not valid JSON');
  }
}

/** Reads a request body of at most `limitBytes` (413, checked on Content-Length and while streaming). */
export async function readRaw(ctx: Context, limitBytes: number): Promise<Buffer> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limitBytes) {
    ctx.set('Connection', 'close');
    throw new GatewayError('payload_too_large', `the body exceeds ${limitBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) {
      ctx.set('Connection', 'close'); // stop reading; the answer still reaches the client
      throw new GatewayError('payload_too_large', `the body exceeds ${limitBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
