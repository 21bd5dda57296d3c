import { GatewayError } from '../../errors/index.js';
import { modelOf, optionalCap, paramsObject, tokens } from './params.js';
import type { PreparedRequest, ProviderAdapter, ProviderResult, SseEvent } from './types.js';

/** The output cap when the caller sets none, and the most it may ask for. */
const DEFAULT_MAX_OUTPUT = 4096;
const MAX_OUTPUT = 32_768;

interface ChatUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number };
}

const usageOf = (u: ChatUsage | undefined) => {
  const cached = tokens(u?.prompt_tokens_details?.cached_tokens);
  return {
    input_tokens: Math.max(0, tokens(u?.prompt_tokens) - cached),
    cached_input_tokens: cached,
    cache_write_tokens: 0,
    output_tokens: tokens(u?.completion_tokens),
  };
};

type Params = ReturnType<typeof paramsObject>;

const prepareEmbeddings = (p: Params, model: string): PreparedRequest => {
  const input = p.input;
  if (!(
    typeof input === 'string' ||
    (Array.isArray(input) && input.length > 0 && input.length <= 2048 && input.every((s) => typeof s === 'string'))
  )) {
    throw new GatewayError('bad_request', 'params.input must be a string or a list of strings');
  }
  if (p.stream !== undefined) throw new GatewayError('bad_request', 'embeddings do not stream');
  return {
    path: '/v1/embeddings',
    body: { ...p },
    stream: false,
    model,
    inputChars: JSON.stringify(input).length,
    maxOutputTokens: 0,
  };
};

const prepareChat = (p: Params, model: string): PreparedRequest => {
  if (!Array.isArray(p.messages) || p.messages.length === 0)
    throw new GatewayError('bad_request', 'params.messages must be a non-empty list');
  if (p.n !== undefined && p.n !== 1) throw new GatewayError('bad_request', 'params.n must be 1 (each choice would multiply the cost)');
  if (p.stream !== undefined && typeof p.stream !== 'boolean') throw new GatewayError('bad_request', 'params.stream must be a boolean');
  const cap = optionalCap(p, 'max_completion_tokens', MAX_OUTPUT) ?? optionalCap(p, 'max_tokens', MAX_OUTPUT) ?? DEFAULT_MAX_OUTPUT;
  const { max_tokens: _dropped, stream_options: _forced, ...rest } = p;
  const stream = p.stream === true;
  const body = { ...rest, max_completion_tokens: cap, ...(stream && { stream: true, stream_options: { include_usage: true } }) };
  // Tools and response formats count as input too: bound the whole request but the cap.
  return { path: '/v1/chat/completions', body, stream, model, inputChars: JSON.stringify(rest).length, maxOutputTokens: cap };
};

// Folds a chat.completions stream into the one answer it stands for; it must end in [DONE] and carry usage.
async function readChatStream(name: string, events: AsyncIterable<SseEvent>): Promise<ProviderResult> {
  let id = '';
  let model = '';
  let content = '';
  let finish: string | null = null;
  let usage: ChatUsage | undefined;
  let done = false;
  for await (const e of events) {
    if (e.data === '[DONE]') {
      done = true;
      break;
    }
    const chunk = JSON.parse(e.data) as {
      id?: string;
      model?: string;
      error?: { message?: string };
      choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
      usage?: ChatUsage | null;
    };
    if (chunk.error) throw new GatewayError('provider_error', `${name} stream error: ${String(chunk.error.message ?? 'unknown')}`);
    id ||= chunk.id ?? '';
    model ||= chunk.model ?? '';
    const choice = chunk.choices?.[0];
    if (choice?.delta?.content) content += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  if (!done) throw new GatewayError('provider_stream_interrupted', `the ${name} stream ended before [DONE]`);
  if (!usage) throw new GatewayError('provider_error', `the ${name} stream carried no usage`);
  return {
    result: {
      id,
      object: 'chat.completion',
      model,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish }],
      usage,
    },
    usage: usageOf(usage),
    model,
  };
}

/**
 * An adapter for a provider that speaks the OpenAI API under `name`: `chat.completions`
 * (streaming with usage forced on) and `embeddings`. An OpenAI-compatible provider is this
 * with its own name, one line in `registry.ts`, and its models in the bundle's price table.
 */
export function openAiCompatible(name: string): ProviderAdapter {
  return {
    name,
    operations: ['chat.completions', 'embeddings'],

    prepare(operation, raw) {
      const p = paramsObject(operation, raw);
      const model = modelOf(p);
      if (operation === 'embeddings') return prepareEmbeddings(p, model);
      if (operation !== 'chat.completions') throw new GatewayError('bad_request', `${name} has no operation '${operation}'`);
      return prepareChat(p, model);
    },

    authHeaders: (secret) => ({ authorization: `Bearer ${secret}` }),

    parse(operation, body): ProviderResult {
      const b = body as { model?: string; usage?: ChatUsage };
      if (!b || typeof b !== 'object') throw new GatewayError('provider_error', `${name} answered with something that is not JSON`);
      const usage = usageOf(b.usage);
      if (operation === 'embeddings') usage.output_tokens = 0;
      return { result: body, usage, model: typeof b.model === 'string' ? b.model : '' };
    },

    parseStream: (_operation, events: AsyncIterable<SseEvent>) => readChatStream(name, events),
  };
}

/** OpenAI itself. */
export const openai = openAiCompatible('openai');
