/**
 * The policy entrypoints the gateway asks, one per action (docs/policy-input.md). Every
 * bundle the gateway activates must compile all of them; `policy build` passes exactly this
 * list to `opa build -e`.
 */
export const ENTRYPOINTS = {
  register: 'cynode/register/decision',
  dispatch: 'cynode/dispatch/decision',
  apiCall: 'cynode/api_call/decision',
  mcpToolInvoke: 'cynode/mcp_tool_invoke/decision',
} as const;

export type Action = keyof typeof ENTRYPOINTS;
export type Entrypoint = (typeof ENTRYPOINTS)[Action];

export const REQUIRED_ENTRYPOINTS: readonly Entrypoint[] = Object.values(ENTRYPOINTS);

/** The name target services pull the gateway's bundle under: `GET /v1/bundles/cynode`. */
export const BUNDLE_NAME = 'cynode';
