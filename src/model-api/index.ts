export { callerFor, JOB_HEADER, type ModelCaller, modelKeyAuth } from './caller.js';
export { anthropicErrorShape, openAiErrorShape } from './errors.js';
export { MODEL_API_ROUTES } from './routes.js';
export { type ModelApiDeps } from './service.js';
