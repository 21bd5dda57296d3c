export { type AuditEvent, type AuditLog, createAuditLog } from './audit.js';
export { type Budget, type BudgetScope, createLedger, type Ledger } from './ledger.js';
export { API_CALL_ROUTES, apiCallerAuth, BUDGET_AND_AUDIT_ROUTES, EGRESS_ROUTES } from './routes.js';
export { type ApiCallAnswer, type ApiCaller, type ApiCallGateway, createApiCallGateway, createEgressService, EGRESS_AUDIENCE, type EgressService } from './service.js';
