import type { Config } from '../config/index.js';
import { StartupError } from '../lib/startup-error.js';
import type { Upstream } from './upstreams.js';

/** `mcp.*` settings in the shape the gateway uses them: upstreams parsed, the stdio environment as a map. */
export interface McpConfig {
  upstreams: Upstream[];
  /** Environment of stdio upstreams, on top of the MCP SDK's safe defaults. */
  stdioEnv: Record<string, string>;
}

const NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/**
 * Parses `mcp.upstreams` and `mcp.stdioEnv`. A mistake in either is a {@link StartupError}
 * whose message names the key (and never a stdio value, which may be a secret): the gateway
 * does not start with half its upstreams.
 */
export function parseMcpConfig(mcp: Pick<Config['mcp'], 'upstreams' | 'stdioEnv'>): McpConfig {
  return { upstreams: parseUpstreams(mcp.upstreams), stdioEnv: parseStdioEnv(mcp.stdioEnv) };
}

/** Parses `mcp.upstreams` (`name=url` or `name=stdio:command args` entries); a bad entry stops the gateway at start. */
export function parseUpstreams(entries: readonly string[]): Upstream[] {
  const seen = new Set<string>();
  return entries.map((entry) => {
    const at = entry.indexOf('=');
    const name = entry.slice(0, at);
    const target = entry.slice(at + 1);
    const stdio = target.startsWith('stdio:') ? target.slice(6).trim().split(/\s+/).filter(Boolean) : undefined;
    if (at < 1 || !NAME.test(name) || (stdio ? stdio.length === 0 : !/^https?:\/\/\S+$/.test(target))) {
      throw new StartupError(
        `mcp.upstreams: '${entry.split(' ')[0]}' must be name=http(s)://host/path or name=stdio:command args, with a lower-case name`,
      );
    }
    if (seen.has(name)) throw new StartupError(`mcp.upstreams: '${name}' is listed twice`);
    seen.add(name);
    return stdio
      ? { name, kind: 'stdio' as const, command: stdio[0]!, args: stdio.slice(1) }
      : { name, kind: 'http' as const, url: new URL(target) };
  });
}

/** `NAME=value` pairs into a map; the value is everything after the first `=`. */
function parseStdioEnv(pairs: readonly string[]): Record<string, string> {
  return Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf('=');
      if (at < 1) throw new StartupError('mcp.stdioEnv: expected NAME=value entries (values hidden)');
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
}
