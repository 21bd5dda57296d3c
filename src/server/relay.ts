import type { Context } from 'koa';

/** An HTTP response written as an answer arrives from elsewhere (see `ProviderRelay` in egress). */
export interface ResponseRelay {
  /** Aborted once the caller's connection closes before the answer has ended. */
  readonly signal: AbortSignal;
  /** Whether `start` has been called: from then on the response is the relayed answer. */
  readonly started: boolean;
  start(status: number, contentType: string): void;
  write(chunk: string | Uint8Array): Promise<void>;
  end(): void;
}

/**
 * Takes over `ctx`'s response for a relayed answer: Koa writes nothing once `start` is called;
 * each chunk goes to the socket as it comes (no buffering, Nagle off), and a write waits for
 * the socket to drain, so a slow caller slows the provider read rather than filling memory.
 * `headers` go out with the status (request ids, the relay marker).
 */
export function responseRelay(ctx: Context, headers: Record<string, string> = {}): ResponseRelay {
  const res = ctx.res;
  const controller = new AbortController();
  const gone = () => {
    if (!res.writableFinished) controller.abort();
  };
  res.once('close', gone);
  let started = false;
  return {
    signal: controller.signal,
    get started() {
      return started;
    },
    start(status, contentType) {
      if (started) return;
      started = true;
      // Koa's status first (the access log and the 404 stage read it), then the raw response.
      ctx.status = status;
      ctx.respond = false;
      res.socket?.setNoDelay(true);
      res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-cache', 'x-accel-buffering': 'no', ...headers });
      res.flushHeaders();
    },
    async write(chunk) {
      if (controller.signal.aborted || res.destroyed || res.writableEnded) return;
      if (res.write(chunk)) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.once('drain', done);
        res.once('close', done);
      });
    },
    end() {
      if (!res.writableEnded && !res.destroyed) res.end();
    },
  };
}
