import { GatewayError } from '../../errors/index.js';
import { deliveredOutput, jsonOf, type MeterState, meterOf } from './meter.js';
import type { RawSseEvent } from './sse.js';
import { DEFAULT_MAX_OUTPUT, MAX_OUTPUT, modelOf, optionalCap, paramsObject, tokens } from './params.js';
import type { PreparedRequest, ProviderAdapter, SseEvent, StreamMeter } from './types.js';

const API_VERSION = '2023-06-01';

interface MessageUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_creation_input_tokens?: number;
  cache_read_input_tokens?: number;
}

const usageOf = (u: MessageUsage | undefined) => ({
  input_tokens: tokens(u?.input_tokens),
  cached_input_tokens: tokens(u?.cache_read_input_tokens),
  cache_write_tokens: tokens(u?.cache_creation_input_tokens),
  output_tokens: tokens(u?.output_tokens),
});

/**
 * Follows a relayed messages stream; every event passes on as it is. Usage is what
 * `message_start` reported, overwritten field by field by the last `message_delta` (its counts
 * are cumulative: never summed).
 */
function messagesMeter(prepared: PreparedRequest): StreamMeter {
  const out = deliveredOutput(prepared);
  const reported: MessageUsage = {};
  const state: MeterState = { complete: false, failure: undefined, model: '' };
  let seen = false;
  const relay = (e: RawSseEvent) => {
    const data = e.carriesData ? jsonOf(e.data) : undefined;
    if (!data) return e.raw;
    const type = e.event ?? (data.type as string | undefined);
    if (type === 'message_start') {
      if (typeof data.message?.model === 'string') state.model = data.message.model;
      if (data.message?.usage) Object.assign(reported, data.message.usage);
      seen = true;
    } else if (type === 'content_block_start' && data.content_block?.type === 'tool_use') out.add(data.content_block.name);
    else if (type === 'content_block_delta') {
      out.add(data.delta?.text);
      out.add(data.delta?.partial_json);
      out.add(data.delta?.thinking);
    } else if (type === 'message_delta' && data.usage) Object.assign(reported, data.usage);
    else if (type === 'message_stop') state.complete = true;
    else if (type === 'error')
      state.failure ??= { code: String(data.error?.type ?? 'provider_error'), message: String(data.error?.message ?? 'error') };
    return e.raw;
  };
  return meterOf(state, relay, () => (state.complete ? usageOf(reported) : out.bound(seen ? usageOf(reported) : {})));
}

/**
 * Anthropic: `messages`, streaming included, prompt-cache reads and writes counted apart; and
 * `messages.count_tokens`, which Anthropic does not bill (reserved and charged at nothing).
 */
export const anthropic: ProviderAdapter = {
  name: 'anthropic',
  operations: ['messages', 'messages.count_tokens'],

  prepare(operation, raw) {
    if (operation !== 'messages' && operation !== 'messages.count_tokens')
      throw new GatewayError('bad_request', `anthropic has no operation '${operation}'`);
    const p = paramsObject(operation, raw);
    const model = modelOf(p);
    if (!Array.isArray(p.messages) || p.messages.length === 0)
      throw new GatewayError('bad_request', 'params.messages must be a non-empty list');
    if (operation === 'messages.count_tokens') {
      if (p.stream !== undefined) throw new GatewayError('bad_request', 'counting tokens does not stream');
      return { path: '/v1/messages/count_tokens', body: p, stream: false, model, inputChars: 0, maxOutputTokens: 0 };
    }
    if (p.stream !== undefined && typeof p.stream !== 'boolean') throw new GatewayError('bad_request', 'params.stream must be a boolean');
    const cap = optionalCap(p, 'max_tokens', MAX_OUTPUT) ?? DEFAULT_MAX_OUTPUT;
    const body = { ...p, max_tokens: cap };
    return { path: '/v1/messages', body, stream: p.stream === true, model, inputChars: JSON.stringify(p).length, maxOutputTokens: cap };
  },

  authHeaders: (secret) => ({ 'x-api-key': secret, 'anthropic-version': API_VERSION }),

  parse(operation, body) {
    const b = body as { model?: string; usage?: MessageUsage };
    if (!b || typeof b !== 'object') throw new GatewayError('provider_error', 'anthropic answered with something that is not JSON');
    if (operation === 'messages.count_tokens') return { result: body, usage: usageOf(undefined), model: '' };
    return { result: body, usage: usageOf(b.usage), model: typeof b.model === 'string' ? b.model : '' };
  },

  async parseStream(_operation, events: AsyncIterable<SseEvent>) {
    let message: { id?: string; model?: string; usage?: MessageUsage } = {};
    const usage: MessageUsage = {};
    let text = '';
    let stop: string | null = null;
    let stopped = false;
    for await (const e of events) {
      const data = JSON.parse(e.data) as {
        type?: string;
        message?: { id?: string; model?: string; usage?: MessageUsage };
        delta?: { type?: string; text?: string; stop_reason?: string };
        usage?: MessageUsage;
        error?: { message?: string };
      };
      const type = e.event ?? data.type;
      if (type === 'error') throw new GatewayError('provider_error', `anthropic stream error: ${String(data.error?.message ?? 'unknown')}`);
      if (type === 'message_start' && data.message) {
        message = data.message;
        Object.assign(usage, data.message.usage);
      } else if (type === 'content_block_delta' && data.delta?.type === 'text_delta') text += data.delta.text ?? '';
      else if (type === 'message_delta') {
        if (data.delta?.stop_reason) stop = data.delta.stop_reason;
        // message_delta carries cumulative counts.
        Object.assign(usage, data.usage);
      } else if (type === 'message_stop') {
        stopped = true;
        break;
      }
    }
    if (!stopped) throw new GatewayError('provider_stream_interrupted', 'the anthropic stream ended before message_stop');
    const model = message.model ?? '';
    return {
      result: {
        id: message.id ?? '',
        type: 'message',
        role: 'assistant',
        model,
        content: [{ type: 'text', text }],
        stop_reason: stop,
        usage,
      },
      usage: usageOf(usage),
      model,
    };
  },

  meter: (_operation, prepared) => messagesMeter(prepared),

  streamError: (_operation, f) =>
    `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: f.code, message: f.message } })}\n\n`,
};
