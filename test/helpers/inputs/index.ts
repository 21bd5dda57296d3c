import { ENTRYPOINTS, type Entrypoint } from '../../../src/policy/index.js';
import type { Random } from './random.js';
import { apiCallInput } from './api-call.js';
import { dispatchInput } from './dispatch.js';
import { mcpToolInvokeInput } from './mcp-tool-invoke.js';
import { registerInput } from './register.js';

export { seeded, type Random } from './random.js';

/** One generator per entrypoint: adding an entrypoint is one file and one line here. */
export const GENERATORS: Record<Entrypoint, (r: Random) => unknown> = {
  [ENTRYPOINTS.register]: registerInput,
  [ENTRYPOINTS.dispatch]: dispatchInput,
  [ENTRYPOINTS.apiCall]: apiCallInput,
  [ENTRYPOINTS.mcpToolInvoke]: mcpToolInvokeInput,
};
