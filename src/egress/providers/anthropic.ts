import { GatewayError } from '../../errors/index.js';
import { modelOf, optionalCap, paramsObject, tokens } from './params.js';
import type { ProviderAdapter, SseEvent } from './types.js';

const DEFAULT_MAX_OUTPUT = 4096;
const MAX_OUTPUT = 32_768;
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

/** Anthropic: `messages`, streaming included; prompt-cache reads and writes counted apart. */
export const anthropic: ProviderAdapter = {
  name: 'anthropic',
  operations: ['messages'],

  prepare(operation, raw) {
    if (operation !== 'messages') throw new GatewayError('bad_request', `anthropic has no operation '${operation}'`);
    const p = paramsObject(operation, raw);
    const model = modelOf(p);
    if (!Array.isArray(p.messages) || p.messages.length === 0)
      throw new GatewayError('bad_request', 'params.messages must be a non-empty list');
    if (p.stream !== undefined && typeof p.stream !== 'boolean') throw new GatewayError('bad_request', 'params.stream must be a boolean');
    const cap = optionalCap(p, 'max_tokens', MAX_OUTPUT) ?? DEFAULT_MAX_OUTPUT;
    const body = { ...p, max_tokens: cap };
    return { path: '/v1/messages', body, stream: p.stream === true, model, inputChars: JSON.stringify(p).length, maxOutputTokens: cap };
  },

  authHeaders: (secret) => ({ 'x-api-key': secret, 'anthropic-version': API_VERSION }),

  parse(_operation, body) {
    const b = body as { model?: string; usage?: MessageUsage };
    if (!b || typeof b !== 'object') throw new GatewayError('provider_error', 'anthropic answered with something that is not JSON');
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
};
