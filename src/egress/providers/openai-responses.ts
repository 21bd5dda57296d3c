import { GatewayError } from '../../errors/index.js';
import type { Usage } from '../pricing.js';
import { deliveredOutput, type EventJson, jsonOf, type MeterState, meterOf } from './meter.js';
import type { RawSseEvent } from './sse.js';
import { cachedUsage, DEFAULT_MAX_OUTPUT, MAX_OUTPUT, optionalCap } from './params.js';
import type { PreparedRequest, ProviderResult, SseEvent, StreamFailure, StreamMeter } from './types.js';

interface ResponsesUsage {
  input_tokens?: number;
  output_tokens?: number;
  input_tokens_details?: { cached_tokens?: number };
}

/** The Responses API's usage as the price table counts it. */
export const responsesUsage = (u: ResponsesUsage | undefined): Usage =>
  cachedUsage(u?.input_tokens, u?.input_tokens_details?.cached_tokens, u?.output_tokens);

// Fields that make the provider add input the request does not carry (a stored conversation, a
// stored prompt): the worst case could not be bounded from the request, so it could not be reserved.
const UNBOUNDED_INPUT = ['previous_response_id', 'conversation', 'prompt'];
// Tool types billed by tokens only; the hosted ones (search, code interpreter, ...) are billed apart.
const TOKEN_BILLED_TOOLS = new Set(['function', 'custom']);

/** Checks a Responses API request and caps its output (`max_output_tokens`). */
export function prepareResponses(p: Record<string, unknown>, model: string): PreparedRequest {
  if (typeof p.input !== 'string' && !Array.isArray(p.input))
    throw new GatewayError('bad_request', 'params.input must be a string or a list');
  for (const field of UNBOUNDED_INPUT) {
    if (p[field] !== undefined && p[field] !== null)
      throw new GatewayError(
        'bad_request',
        `${field} adds input the request does not carry, so its cost cannot be reserved: send the whole input`,
      );
  }
  if (p.background === true) throw new GatewayError('bad_request', 'background responses outlive the call and cannot be settled');
  if (p.tools !== undefined) {
    if (!Array.isArray(p.tools)) throw new GatewayError('bad_request', 'params.tools must be a list');
    const hosted = (p.tools as { type?: unknown }[]).find((t) => !TOKEN_BILLED_TOOLS.has(String(t?.type)));
    if (hosted)
      throw new GatewayError(
        'bad_request',
        `tool type '${String(hosted?.type).slice(0, 64)}' is billed apart from tokens and cannot be reserved`,
      );
  }
  if (p.stream !== undefined && typeof p.stream !== 'boolean') throw new GatewayError('bad_request', 'params.stream must be a boolean');
  const cap = optionalCap(p, 'max_output_tokens', MAX_OUTPUT) ?? DEFAULT_MAX_OUTPUT;
  const { max_output_tokens: _capped, ...rest } = p;
  return {
    path: '/v1/responses',
    body: { ...rest, max_output_tokens: cap },
    stream: p.stream === true,
    model,
    inputChars: JSON.stringify(rest).length,
    maxOutputTokens: cap,
  };
}

const TERMINAL = new Set(['response.completed', 'response.incomplete']);

/** The failure an event of a Responses stream reports, if it reports one. */
function failureOf(type: string | undefined, data: EventJson): StreamFailure | undefined {
  if (type === 'error')
    return {
      code: String(data.code ?? data.error?.code ?? 'provider_error'),
      message: String(data.message ?? data.error?.message ?? 'error'),
    };
  if (type === 'response.failed') {
    const e = data.response?.error as { code?: unknown; message?: unknown } | undefined;
    return { code: String(e?.code ?? 'provider_error'), message: String(e?.message ?? 'the response failed') };
  }
  return undefined;
}

/** Follows a relayed Responses stream: every event passes on as it is; deltas count as delivered output. */
export function responsesMeter(prepared: PreparedRequest): StreamMeter {
  const out = deliveredOutput(prepared);
  const state: MeterState = { complete: false, failure: undefined, model: '' };
  let final: ResponsesUsage | undefined;
  const relay = (e: RawSseEvent) => {
    const data = e.carriesData ? jsonOf(e.data) : undefined;
    if (!data) return e.raw;
    const type = e.event ?? (data.type as string | undefined);
    state.model ||= typeof data.response?.model === 'string' ? data.response.model : '';
    if (type?.endsWith('.delta')) out.add(data.delta);
    state.failure ??= failureOf(type, data);
    if (data.response?.usage) final = data.response.usage as ResponsesUsage;
    if (type && TERMINAL.has(type)) state.complete = true;
    return e.raw;
  };
  return meterOf(state, relay, () => (state.complete && final ? responsesUsage(final) : out.bound(final ? responsesUsage(final) : {})));
}

/** Folds a Responses stream into the response it ends with (`response.completed` carries it whole). */
export async function readResponsesStream(name: string, events: AsyncIterable<SseEvent>): Promise<ProviderResult> {
  for await (const e of events) {
    const data = jsonOf(e.data);
    if (!data) throw new GatewayError('provider_error', `${name} sent a malformed event`);
    const type = e.event ?? (data.type as string | undefined);
    const failure = failureOf(type, data);
    if (failure) throw new GatewayError('provider_error', `${name} stream error: ${failure.message}`);
    if (type && TERMINAL.has(type)) {
      const response = data.response as { model?: unknown; usage?: ResponsesUsage } | undefined;
      if (!response?.usage) throw new GatewayError('provider_error', `the ${name} stream carried no usage`);
      return { result: response, usage: responsesUsage(response.usage), model: typeof response.model === 'string' ? response.model : '' };
    }
  }
  throw new GatewayError('provider_stream_interrupted', `the ${name} stream ended before response.completed`);
}

/** A Responses stream's own error event (what the OpenAI SDK raises as an APIError). */
export const responsesStreamError = (f: StreamFailure): string =>
  `event: error\ndata: ${JSON.stringify({ type: 'error', code: f.code, message: f.message, param: null })}\n\n`;
