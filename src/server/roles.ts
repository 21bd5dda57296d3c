import type { Config } from '../config/index.js';

/** The gateway's three roles (control plane, MCP gateway, API Egress); `all` runs every one in one process. */
export const ROLES = ['control', 'mcp', 'egress'] as const;
export type Role = (typeof ROLES)[number];

/** Parses a `--role` value: one role, a comma list, or `all`. */
export function parseRoles(value: string): Role[] {
  if (value === 'all') return [...ROLES];
  const roles = value.split(',').map((r) => r.trim());
  const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (bad.length > 0 || roles.length === 0) {
    throw new Error(`unknown role '${bad.join(',') || value}': use control, mcp, egress or all`);
  }
  return [...new Set(roles as Role[])];
}

/** The configured port of a role. */
export function portOf(role: Role, server: Config['server']): number {
  return { control: server.controlPort, mcp: server.mcpPort, egress: server.egressPort }[role];
}
