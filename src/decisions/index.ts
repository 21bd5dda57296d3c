export { createDecisionLog, type DecisionEvent, type DecisionLog, type DecisionLogOptions } from './log.js';
export { MASKED, maskInput } from './mask.js';
export { DECISION_ROUTES, type DecisionRouteDeps } from './routes.js';
export { POLICY_ROUTES, type PolicyRouteDeps, type StatusSection } from './policy-routes.js';
export { createDecisionService, type DecisionRecord, type DecisionService } from './service.js';
