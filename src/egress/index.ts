export { type AuditEvent, type AuditLog, createAuditLog } from './audit.js';
export { type ApiCallGateway, type ApiCallGatewayDeps, createApiCallGateway } from './first-gate.js';
export { createEgressService, type EgressService, type EgressServiceDeps } from './final-gate.js';
export { type Budget, type BudgetScope, createLedger, type Ledger } from './ledger.js';
export type { ProviderCallLimits, ProviderUrls } from './provider-call.js';
export { PROVIDERS } from './providers/registry.js';
export type { ProviderRelay } from './relay.js';
export { API_CALL_ERRORS, API_CALL_ROUTES, apiCallerAuth, BUDGET_AND_AUDIT_ROUTES, EGRESS_ROUTES } from './routes.js';
export { type ApiCallAnswer, type ApiCaller, type ApiCallReply, EGRESS_AUDIENCE, EGRESS_PATH } from './types.js';
