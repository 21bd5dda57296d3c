import { GatewayError } from '../../errors/index.js';
import { type DeliveredOutput, deliveredOutput, jsonOf, type MeterState, meterOf } from './meter.js';
import { prepareResponses, readResponsesStream, responsesMeter, responsesStreamError, responsesUsage } from './openai-responses.js';
import { cachedUsage, DEFAULT_MAX_OUTPUT, MAX_OUTPUT, modelOf, optionalCap, paramsObject } from './params.js';
import { dataOf, type RawSseEvent } from './sse.js';
import type { PreparedRequest, ProviderAdapter, ProviderResult, SseEvent, StreamMeter } from './types.js';

interface ChatUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number };
}

const usageOf = (u: ChatUsage | undefined) => cachedUsage(u?.prompt_tokens, u?.prompt_tokens_details?.cached_tokens, u?.completion_tokens);

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
  const { max_tokens: _dropped, max_completion_tokens: _capped, stream_options: asked, ...rest } = p;
  const stream = p.stream === true;
  const options = asked !== null && typeof asked === 'object' && !Array.isArray(asked) ? (asked as Record<string, unknown>) : {};
  const body = {
    ...rest,
    max_completion_tokens: cap,
    ...(stream && { stream: true, stream_options: { ...options, include_usage: true } }),
  };
  // Tools and response formats count as input too: bound the whole request but the cap.
  return {
    path: '/v1/chat/completions',
    body,
    stream,
    model,
    inputChars: JSON.stringify(rest).length,
    maxOutputTokens: cap,
    ...(stream && options.include_usage !== true && { usageForced: true }),
  };
};

/**
 * A chunk without the `"usage": null` member a forced usage report adds to every chunk: cut
 * from the text so the rest stays byte for byte (a quote inside a string is escaped, so the
 * pattern can only match a member); if the cut does not check out, the chunk is written anew.
 */
function withoutNullUsage(raw: string, chunk: Record<string, unknown>): string {
  const cut = raw.replace(/,\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*/, '');
  const again = jsonOf(dataOf(cut) ?? '');
  if (again && !('usage' in again) && Object.keys(again).length === Object.keys(chunk).length - 1) return cut;
  const { usage: _null, ...rest } = chunk;
  return `data: ${JSON.stringify(rest)}\n\n`;
}

interface ChatDelta {
  content?: unknown;
  refusal?: unknown;
  reasoning_content?: unknown;
  tool_calls?: { function?: { name?: unknown; arguments?: unknown } }[];
}

/**
 * Follows a relayed chat.completions stream. When the gateway forced the usage report, the
 * report chunk is dropped and so is the `usage: null` of every other chunk: the caller sees
 * the stream it asked for.
 */
function chatMeter(prepared: PreparedRequest): StreamMeter {
  const out = deliveredOutput(prepared);
  const state: MeterState = { complete: false, failure: undefined, model: '' };
  let final: ChatUsage | undefined;
  const relay = (e: RawSseEvent) => {
    if (!e.carriesData) return e.raw;
    if (e.data === '[DONE]') {
      state.complete = true;
      return e.raw;
    }
    const chunk = jsonOf(e.data);
    if (!chunk) return e.raw;
    if (chunk.error) {
      state.failure ??= {
        code: String(chunk.error.code ?? chunk.error.type ?? 'provider_error'),
        message: String(chunk.error.message ?? 'error'),
      };
      return e.raw;
    }
    if (typeof chunk.model === 'string') state.model ||= chunk.model;
    if (chunk.usage) final = chunk.usage as ChatUsage;
    for (const choice of Array.isArray(chunk.choices) ? (chunk.choices as { delta?: ChatDelta }[]) : []) countDelta(out, choice?.delta);
    if (!prepared.usageForced) return e.raw;
    if (Array.isArray(chunk.choices) && chunk.choices.length === 0 && chunk.usage) return null;
    return 'usage' in chunk && chunk.usage === null ? withoutNullUsage(e.raw, chunk) : e.raw;
  };
  return meterOf(state, relay, () => (state.complete && final ? usageOf(final) : out.bound(final ? usageOf(final) : {})));
}

/** Counts what one delta delivers: content, refusal, reasoning, tool names and arguments. */
function countDelta(out: DeliveredOutput, d: ChatDelta | undefined): void {
  out.add(d?.content);
  out.add(d?.refusal);
  out.add(d?.reasoning_content);
  for (const call of Array.isArray(d?.tool_calls) ? d.tool_calls : []) {
    out.add(call?.function?.name);
    out.add(call?.function?.arguments);
  }
}

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
 * (streaming with usage forced on), `responses` (the Responses API) and `embeddings`. An
 * OpenAI-compatible provider is this with its own name, one line in `registry.ts`, and its
 * models in the bundle's price table.
 */
export function openAiCompatible(name: string): ProviderAdapter {
  return {
    name,
    operations: ['chat.completions', 'responses', 'embeddings'],

    prepare(operation, raw) {
      const p = paramsObject(operation, raw);
      const model = modelOf(p);
      if (operation === 'embeddings') return prepareEmbeddings(p, model);
      if (operation === 'responses') return prepareResponses(p, model);
      if (operation !== 'chat.completions') throw new GatewayError('bad_request', `${name} has no operation '${operation}'`);
      return prepareChat(p, model);
    },

    authHeaders: (secret) => ({ authorization: `Bearer ${secret}` }),

    parse(operation, body): ProviderResult {
      const b = body as { model?: string; usage?: ChatUsage };
      if (!b || typeof b !== 'object') throw new GatewayError('provider_error', `${name} answered with something that is not JSON`);
      const model = typeof b.model === 'string' ? b.model : '';
      if (operation === 'responses') return { result: body, usage: responsesUsage(b.usage as never), model };
      const usage = usageOf(b.usage);
      if (operation === 'embeddings') usage.output_tokens = 0;
      return { result: body, usage, model };
    },

    parseStream: (operation, events: AsyncIterable<SseEvent>) =>
      operation === 'responses' ? readResponsesStream(name, events) : readChatStream(name, events),

    meter: (operation, prepared) => (operation === 'responses' ? responsesMeter(prepared) : chatMeter(prepared)),

    // Chat streams carry an error as a chunk with `error`; Responses streams as an `error` event.
    streamError: (operation, f) =>
      operation === 'responses'
        ? responsesStreamError(f)
        : `data: ${JSON.stringify({ error: { message: f.message, type: f.code, code: f.code, param: null } })}\n\n`,
  };
}

/** OpenAI itself. */
export const openai = openAiCompatible('openai');
