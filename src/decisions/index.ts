export { createDecisionLog, type DecisionEvent, type DecisionLog, type DecisionLogOptions } from './log.js';
export { MASKED, maskInput } from './mask.js';
export { decisionRoutes } from './routes.js';
export { createDecisionService, type DecisionRecord, type DecisionService } from './service.js';
