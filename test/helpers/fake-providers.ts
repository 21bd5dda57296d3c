import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the next request gets, queued; `ok` when the queue is empty. */
export type Behaviour =
  | 'ok'
  | 'hang' // accept, never answer
  | 'stall' // start streaming, then go quiet
  | 'drop' // start streaming, then cut the connection
  | 'linger' // stream everything, [DONE] included, then keep the body open
  | 'echo-key' // a 400 whose message quotes the credential it was sent
  | { status: number; retryAfter?: string };

/** A request the fake received. */
export interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, any>;
  /** The usage the fake reported in its answer (billing truth for reconciliation). */
  usage?: Record<string, unknown>;
}

/**
 * A loopback server speaking OpenAI's and Anthropic's wire formats (JSON and server-sent
 * events, usage included, errors in their shapes), for tests and benchmarks.
 */
export interface FakeProvider {
  url: string;
  received: Received[];
  /** TCP connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connections(): number;
  next(...behaviours: Behaviour[]): void;
  close(): Promise<void>;
}

const count = (v: unknown) => Math.ceil(JSON.stringify(v ?? '').length / 4);
const WORDS = ['Hello', ' from', ' the', ' fake', ' provider'];

export async function startFakeProvider(): Promise<FakeProvider> {
  const queue: Behaviour[] = [];
  const received: Received[] = [];
  const sockets = new Set<import('node:net').Socket>();
  let connections = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Record<string, any>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      } catch {
        return json(res, 400, { error: { message: 'invalid JSON', type: 'invalid_request_error' } });
      }
      const entry: Received = { path: req.url ?? '', headers: req.headers, body };
      received.push(entry);
      const behaviour = queue.shift() ?? 'ok';
      if (behaviour === 'hang') return;
      if (typeof behaviour === 'object') {
        if (behaviour.retryAfter !== undefined) res.setHeader('retry-after', behaviour.retryAfter);
        return json(res, behaviour.status, { error: { message: `fake failure ${behaviour.status}`, type: 'server_error' } });
      }
      const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '') || String(req.headers['x-api-key'] ?? '');
      if (!key) return json(res, 401, { error: { message: 'missing API key', type: 'authentication_error' } });
      if (behaviour === 'echo-key')
        return json(res, 400, { error: { message: `invalid request for key ${key}`, type: 'invalid_request_error' } });
      if (req.url === '/v1/chat/completions') return openaiChat(res, body, behaviour, entry);
      if (req.url === '/v1/embeddings') {
        const prompt = count(body.input);
        entry.usage = { prompt_tokens: prompt, total_tokens: prompt };
        return json(res, 200, {
          object: 'list',
          model: body.model,
          data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2, 0.3] }],
          usage: { prompt_tokens: prompt, total_tokens: prompt },
        });
      }
      if (req.url === '/v1/messages') {
        if (req.headers['anthropic-version'] !== '2023-06-01')
          return json(res, 400, { type: 'error', error: { type: 'invalid_request_error', message: 'anthropic-version required' } });
        return anthropicMessages(res, body, behaviour, entry);
      }
      json(res, 404, { error: { message: `no route ${req.url}` } });
    });
  });
  server.on('connection', (s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    connections: () => connections,
    next: (...b) => queue.push(...b),
    close: () =>
      new Promise((r) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => r());
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function startStream(res: ServerResponse) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
}

async function streamWords(res: ServerResponse, behaviour: Behaviour, send: (word: string) => void) {
  for (const [i, word] of WORDS.entries()) {
    send(word);
    if (i === 1 && behaviour === 'stall') return false;
    if (i === 1 && behaviour === 'drop') {
      res.socket?.destroy();
      return false;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return true;
}

async function openaiChat(res: ServerResponse, body: Record<string, any>, behaviour: Behaviour, entry: Received) {
  const prompt = count(body.messages);
  const cached = JSON.stringify(body.messages).includes('cached') ? Math.floor(prompt / 2) : 0;
  const completion = Math.min(Number(body.max_completion_tokens ?? body.max_tokens ?? 4096), WORDS.length);
  const usage = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
  entry.usage = usage;
  const base = { id: 'chatcmpl-fake', model: `${body.model}-2026-01-01`, created: 1_800_000_000 };
  if (!body.stream) {
    return json(res, 200, {
      ...base,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: WORDS.join('') }, finish_reason: 'stop' }],
      usage,
    });
  }
  startStream(res);
  const chunk = (delta: object, finish: string | null) =>
    res.write(
      `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`,
    );
  chunk({ role: 'assistant', content: '' }, null);
  if (!(await streamWords(res, behaviour, (w) => chunk({ content: w }, null)))) return;
  chunk({}, 'stop');
  if (body.stream_options?.include_usage)
    res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage })}\n\n`);
  if (behaviour === 'linger') res.write('data: [DONE]\n\n');
  else res.end('data: [DONE]\n\n');
}

async function anthropicMessages(res: ServerResponse, body: Record<string, any>, behaviour: Behaviour, entry: Received) {
  const input = count(body.messages) + count(body.system ?? '');
  const cacheRead = JSON.stringify(body).includes('cache_control') ? 100 : 0;
  const cacheWrite = cacheRead ? 20 : 0;
  const output = Math.min(Number(body.max_tokens), WORDS.length);
  const usage = { input_tokens: input, output_tokens: output, cache_creation_input_tokens: cacheWrite, cache_read_input_tokens: cacheRead };
  entry.usage = usage;
  const message = { id: 'msg_fake', type: 'message', role: 'assistant', model: body.model, stop_reason: 'end_turn' };
  if (!body.stream) return json(res, 200, { ...message, content: [{ type: 'text', text: WORDS.join('') }], usage });
  startStream(res);
  const event = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  event('message_start', { message: { ...message, stop_reason: null, content: [], usage: { ...usage, output_tokens: 1 } } });
  event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
  event('ping', {});
  if (!(await streamWords(res, behaviour, (w) => event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } }))))
    return;
  event('content_block_stop', { index: 0 });
  event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: output } });
  event('message_stop', {});
  res.end();
}
