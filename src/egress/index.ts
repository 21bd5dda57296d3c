export { type AuditEvent, type AuditLog, createAuditLog } from './audit.js';
export { type Budget, type BudgetScope, createLedger, type Ledger } from './ledger.js';
export { apiCallerAuth, apiCallRoutes, budgetAndAuditRoutes, egressRoutes } from './routes.js';
export { type ApiCallAnswer, type ApiCaller, type ApiCallGateway, createApiCallGateway, createEgressService, EGRESS_AUDIENCE, type EgressService } from './service.js';
