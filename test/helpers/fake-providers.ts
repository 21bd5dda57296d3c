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
  | 'error-mid-stream' // stream two words, then the provider's own error event
  | { status: number; retryAfter?: string }
  | { paceMs: number; words?: number }; // stream `words` words (default 5), `paceMs` apart

/** A request the fake received. */
export interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, any>;
  /** The usage the fake reported in its answer (billing truth for reconciliation). */
  usage?: Record<string, unknown>;
  /** When each streamed event carrying output was written (performance.now() of this process). */
  sentAt: number[];
  /** When the caller closed the connection before the answer ended (the request was aborted). */
  abortedAt?: number;
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
      const entry: Received = { path: req.url ?? '', headers: req.headers, body, sentAt: [] };
      received.push(entry);
      res.once('close', () => {
        if (!res.writableFinished) entry.abortedAt = performance.now();
      });
      const behaviour = queue.shift() ?? 'ok';
      if (behaviour === 'hang') return;
      if (typeof behaviour === 'object' && 'status' in behaviour) {
        if (behaviour.retryAfter !== undefined) res.setHeader('retry-after', behaviour.retryAfter);
        return json(res, behaviour.status, { error: { message: `fake failure ${behaviour.status}`, type: 'server_error' } });
      }
      const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '') || String(req.headers['x-api-key'] ?? '');
      if (!key) return json(res, 401, { error: { message: 'missing API key', type: 'authentication_error' } });
      if (behaviour === 'echo-key')
        return json(res, 400, { error: { message: `invalid request for key ${key}`, type: 'invalid_request_error' } });
      if (req.url === '/v1/chat/completions') return openaiChat(res, body, behaviour, entry);
      if (req.url === '/v1/responses') return openaiResponses(res, body, behaviour, entry);
      if (req.url === '/v1/messages/count_tokens') return json(res, 200, { input_tokens: count(body.messages) + count(body.system ?? '') });
      if (req.url === '/v1/embeddings') {
        const prompt = count(body.input);
        entry.usage = { prompt_tokens: prompt, total_tokens: prompt };
        return json(res, 200, {
          object: 'list',
          model: body.model,
          // As OpenAI does: base64 of little-endian float32s when asked (the OpenAI SDK asks by default).
          data: [
            {
              object: 'embedding',
              index: 0,
              embedding: body.encoding_format === 'base64' ? base64Floats([0.1, 0.2, 0.3]) : [0.1, 0.2, 0.3],
            },
          ],
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

const base64Floats = (v: number[]) => Buffer.from(new Float32Array(v).buffer).toString('base64');

function json(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function startStream(res: ServerResponse) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
}

/** The words a stream sends under `behaviour`. */
const wordsOf = (behaviour: Behaviour): string[] =>
  typeof behaviour === 'object' && 'paceMs' in behaviour
    ? Array.from({ length: behaviour.words ?? WORDS.length }, (_, i) => WORDS[i % WORDS.length]!)
    : WORDS;

/**
 * Streams the words of `behaviour` through `send`, 2 ms apart (or its pace). False when the
 * stream was cut short (stall, drop, a provider error, the caller gone): the caller sends no end.
 */
async function streamWords(res: ServerResponse, behaviour: Behaviour, entry: Received, send: (word: string) => void, error?: () => void) {
  const pace = typeof behaviour === 'object' && 'paceMs' in behaviour ? behaviour.paceMs : 2;
  for (const [i, word] of wordsOf(behaviour).entries()) {
    if (res.destroyed) return false;
    send(word);
    entry.sentAt.push(performance.now());
    if (i === 1 && behaviour === 'stall') return false;
    if (i === 1 && behaviour === 'drop') {
      res.socket?.destroy();
      return false;
    }
    if (i === 1 && behaviour === 'error-mid-stream' && error) {
      error();
      res.end();
      return false;
    }
    await new Promise((r) => setTimeout(r, pace));
  }
  return !res.destroyed;
}

async function openaiChat(res: ServerResponse, body: Record<string, any>, behaviour: Behaviour, entry: Received) {
  const prompt = count(body.messages);
  const cached = JSON.stringify(body.messages).includes('cached') ? Math.floor(prompt / 2) : 0;
  const completion = Math.min(Number(body.max_completion_tokens ?? body.max_tokens ?? 4096), wordsOf(behaviour).length);
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
  // With include_usage, every chunk carries `"usage": null` and one more chunk the usage, as OpenAI's do.
  const withUsage = body.stream_options?.include_usage === true;
  const chunk = (delta: object, finish: string | null) =>
    res.write(
      `data: ${JSON.stringify({
        ...base,
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta, finish_reason: finish }],
        ...(withUsage && { usage: null }),
      })}\n\n`,
    );
  chunk({ role: 'assistant', content: '' }, null);
  const error = () =>
    res.write(`data: ${JSON.stringify({ error: { message: 'fake overload mid-stream', type: 'server_error', code: 'overloaded' } })}\n\n`);
  if (!(await streamWords(res, behaviour, entry, (w) => chunk({ content: w }, null), error))) return;
  const tool = Array.isArray(body.tools) ? body.tools[0]?.function?.name : undefined;
  if (tool) {
    chunk({ tool_calls: [{ index: 0, id: 'call_fake', type: 'function', function: { name: tool, arguments: '' } }] }, null);
    for (const part of ['{"city"', ':"Paris"}']) chunk({ tool_calls: [{ index: 0, function: { arguments: part } }] }, null);
  }
  chunk({}, tool ? 'tool_calls' : 'stop');
  if (withUsage) res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage })}\n\n`);
  if (behaviour === 'linger') res.write('data: [DONE]\n\n');
  else res.end('data: [DONE]\n\n');
}

async function anthropicMessages(res: ServerResponse, body: Record<string, any>, behaviour: Behaviour, entry: Received) {
  const input = count(body.messages) + count(body.system ?? '');
  const cacheRead = JSON.stringify(body).includes('cache_control') ? 100 : 0;
  const cacheWrite = cacheRead ? 20 : 0;
  const output = Math.min(Number(body.max_tokens), wordsOf(behaviour).length);
  const usage = { input_tokens: input, output_tokens: output, cache_creation_input_tokens: cacheWrite, cache_read_input_tokens: cacheRead };
  entry.usage = usage;
  const message = { id: 'msg_fake', type: 'message', role: 'assistant', model: body.model, stop_reason: 'end_turn' };
  if (!body.stream) return json(res, 200, { ...message, content: [{ type: 'text', text: WORDS.join('') }], usage });
  startStream(res);
  const event = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  event('message_start', { message: { ...message, stop_reason: null, content: [], usage: { ...usage, output_tokens: 1 } } });
  let index = 0;
  if (body.thinking?.type === 'enabled') {
    event('content_block_start', { index, content_block: { type: 'thinking', thinking: '' } });
    event('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: 'Let me think.' } });
    event('content_block_delta', { index, delta: { type: 'signature_delta', signature: 'c2lnbmF0dXJl' } });
    event('content_block_stop', { index: index++ });
  }
  event('content_block_start', { index, content_block: { type: 'text', text: '' } });
  event('ping', {});
  const error = () => event('error', { error: { type: 'overloaded_error', message: 'fake overload mid-stream' } });
  const text = (w: string) => event('content_block_delta', { index, delta: { type: 'text_delta', text: w } });
  if (!(await streamWords(res, behaviour, entry, text, error))) return;
  event('content_block_stop', { index: index++ });
  const tool = Array.isArray(body.tools) ? body.tools[0]?.name : undefined;
  if (tool) {
    event('content_block_start', { index, content_block: { type: 'tool_use', id: 'toolu_fake', name: tool, input: {} } });
    for (const part of ['{"city"', ':"Paris"}'])
      event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: part } });
    event('content_block_stop', { index: index++ });
  }
  event('message_delta', { delta: { stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: output } });
  event('message_stop', {});
  res.end();
}

async function openaiResponses(res: ServerResponse, body: Record<string, any>, behaviour: Behaviour, entry: Received) {
  const input = count(body.input) + count(body.instructions ?? '');
  const output = Math.min(Number(body.max_output_tokens ?? 4096), wordsOf(behaviour).length);
  const usage = { input_tokens: input, input_tokens_details: { cached_tokens: 0 }, output_tokens: output, total_tokens: input + output };
  entry.usage = usage;
  const tool = Array.isArray(body.tools) ? body.tools.find((t: { type?: string }) => t.type === 'function')?.name : undefined;
  const text = wordsOf(behaviour).join('');
  const message = {
    id: 'msg_fake',
    type: 'message',
    status: 'completed',
    role: 'assistant',
    content: [{ type: 'output_text', text, annotations: [] }],
  };
  const call = tool && {
    id: 'fc_fake',
    type: 'function_call',
    status: 'completed',
    call_id: 'call_fake',
    name: tool,
    arguments: '{"city":"Paris"}',
  };
  const response = (status: string, extra: object) => ({
    id: 'resp_fake',
    object: 'response',
    created_at: 1_800_000_000,
    model: `${body.model}-2026-01-01`,
    status,
    output: [],
    ...extra,
  });
  if (!body.stream) return json(res, 200, response('completed', { output: [message, ...(call ? [call] : [])], usage }));
  startStream(res);
  let seq = 0;
  const event = (type: string, data: object) =>
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
  event('response.created', { response: response('in_progress', {}) });
  event('response.output_item.added', { output_index: 0, item: { ...message, status: 'in_progress', content: [] } });
  event('response.content_part.added', {
    output_index: 0,
    item_id: 'msg_fake',
    content_index: 0,
    part: { type: 'output_text', text: '', annotations: [] },
  });
  const delta = (w: string) => event('response.output_text.delta', { output_index: 0, item_id: 'msg_fake', content_index: 0, delta: w });
  const error = () => event('error', { code: 'server_error', message: 'fake overload mid-stream', param: null });
  if (!(await streamWords(res, behaviour, entry, delta, error))) return;
  event('response.output_text.done', { output_index: 0, item_id: 'msg_fake', content_index: 0, text });
  event('response.output_item.done', { output_index: 0, item: message });
  if (call) {
    event('response.output_item.added', { output_index: 1, item: { ...call, arguments: '', status: 'in_progress' } });
    for (const part of ['{"city"', ':"Paris"}'])
      event('response.function_call_arguments.delta', { output_index: 1, item_id: 'fc_fake', delta: part });
    event('response.function_call_arguments.done', { output_index: 1, item_id: 'fc_fake', arguments: call.arguments });
    event('response.output_item.done', { output_index: 1, item: call });
  }
  event('response.completed', { response: response('completed', { output: [message, ...(call ? [call] : [])], usage }) });
  res.end();
}
