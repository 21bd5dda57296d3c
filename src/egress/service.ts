/**
 * The two gates of `api.call`, under the names the routes import: the first gate on the
 * control plane (`first-gate.ts`) and the final gate on the egress role (`final-gate.ts`).
 */
export { type ApiCallGateway, type ApiCallGatewayDeps, createApiCallGateway } from './first-gate.js';
export { createEgressService, type EgressService, type EgressServiceDeps } from './final-gate.js';
export { parseApiCall } from './input.js';
export type { ProviderUrls } from './provider-call.js';
export { type ApiCallAnswer, type ApiCaller, type ApiCallReply, EGRESS_AUDIENCE, EGRESS_PATH } from './types.js';
