/**
 * The runtime settings operators may change without a bundle rebuild, each with the type its
 * value must have. Policies read them as `data.runtime.settings[<key>]`.
 */
export const SETTINGS = {
  /** The cloud routing kill switch (disables cloud routing at once). */
  'cloud_routing.enabled': 'boolean',
  /** MCP tools switched off by an admin, as {"<tool>": true} (`mcp.tool.invoke` denies them with tool_disabled). */
  'mcp.disabled_tools': 'object',
} as const satisfies Record<string, 'boolean' | 'number' | 'string' | 'object'>;

export type SettingKey = keyof typeof SETTINGS;

/** True when `key` is a known setting. */
export function isSettingKey(key: string): key is SettingKey {
  return Object.prototype.hasOwnProperty.call(SETTINGS, key);
}

/** True when `value` has the type the setting requires. */
export function validSettingValue(key: SettingKey, value: unknown): boolean {
  const type = SETTINGS[key] as string;
  if (type === 'object') return value !== null && typeof value === 'object' && !Array.isArray(value);
  return typeof value === type;
}
