import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { buildBundle, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { tempDir } from './config.js';

/** Where the suite's bundle of the real `policies/` lives (built by `opa build`, never checked in). */
export function bundlePath(): string {
  return join(packageRoot(), 'build', 'test', 'bundle.tar.gz');
}

let building: Promise<string> | undefined;

/**
 * Builds the real policies into the suite's bundle once per run. `opa build` writes to a
 * temporary file renamed into place, so concurrent test files never see half a bundle; calls
 * within one file share the build in flight (its temporary file is named by process id).
 */
export function ensureBundle(): Promise<string> {
  building ??= buildIfStale().finally(() => (building = undefined));
  return building;
}

async function buildIfStale(): Promise<string> {
  const out = bundlePath();
  const policies = join(packageRoot(), 'policies');
  if (!existsSync(out) || newestMtime(policies) > statSync(out).mtimeMs) {
    await buildBundle({
      policiesDir: policies,
      out,
      entrypoints: REQUIRED_ENTRYPOINTS,
      revision: 'test-suite',
    });
  }
  return out;
}

/**
 * Builds a bundle from Rego and data written into a temp folder (for bundles the real policies
 * would never produce: missing entrypoints, allow-all, malformed results).
 */
export async function buildCustomBundle(
  files: Record<string, string>,
  options: { entrypoints?: readonly string[]; revision?: string } = {},
): Promise<string> {
  const dir = tempDir('cynode-policies-');
  // Every required entrypoint the test does not write itself gets a deny-all stand-in, so a
  // test about one policy still builds a bundle the gateway accepts.
  const stubs = options.entrypoints
    ? {}
    : Object.fromEntries(
        REQUIRED_ENTRYPOINTS.filter((e) => !Object.keys(files).some((f) => f.startsWith(`${e.slice(0, e.lastIndexOf('/'))}/`))).map((e) => {
          const pkg = e.slice(0, e.lastIndexOf('/'));
          return [
            `${pkg}/stub.rego`,
            `package ${pkg.replaceAll('/', '.')}\n\ndecision := {"allow": false, "reasons": ["not_in_this_test"]}\n`,
          ];
        }),
      );
  // The shared rules (`cynode.lib`) come along unless the test writes its own: a real policy
  // file taken into a custom bundle imports them.
  const lib = options.entrypoints
    ? {}
    : { 'cynode/lib/lib.rego': readFileSync(join(packageRoot(), 'policies', 'cynode', 'lib', 'lib.rego'), 'utf8') };
  for (const [path, text] of Object.entries({ ...lib, ...stubs, ...files })) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  const out = join(tempDir('cynode-bundle-'), 'bundle.tar.gz');
  await buildBundle({
    policiesDir: dir,
    out,
    entrypoints: options.entrypoints ?? REQUIRED_ENTRYPOINTS,
    revision: options.revision ?? 'custom',
  });
  return out;
}

/**
 * Builds the real policies with some files changed: `edit` gets each file's text (its path under
 * `policies/`) and returns it as the bundle should have it. For data a test needs that the shipped
 * data does not grant (a node's own grant), without a hand-written bundle.
 */
export async function buildPoliciesWith(edit: Record<string, (text: string) => string>): Promise<string> {
  const dir = tempDir('cynode-policies-');
  cpSync(join(packageRoot(), 'policies'), dir, { recursive: true });
  for (const [path, change] of Object.entries(edit)) {
    const before = readFileSync(join(dir, path), 'utf8');
    const after = change(before);
    if (after === before) throw new Error(`the edit of ${path} changed nothing`);
    writeFileSync(join(dir, path), after);
  }
  const out = join(tempDir('cynode-bundle-'), 'bundle.tar.gz');
  await buildBundle({ policiesDir: dir, out, entrypoints: REQUIRED_ENTRYPOINTS, revision: 'edited' });
  return out;
}

function newestMtime(dir: string): number {
  return Math.max(
    ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newestMtime(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
    ),
  );
}
