// Builds the operator console into dist/console/: console/src/main.ts bundled by esbuild into
// one ES module (no runtime fetches, no CDN), its stylesheet, and index.html. The gateway
// serves exactly these files at /console under a strict Content-Security-Policy. Each file is
// written beside its final name and renamed over it, so a gateway starting meanwhile (tests
// build in parallel) reads either the old file or the new one, never half of one.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'console');

const result = await build({
  entryPoints: { app: join(root, 'console', 'src', 'main.ts'), 'app-style': join(root, 'console', 'src', 'app.css') },
  outdir: out,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  write: false,
});
const files = result.outputFiles.map((f) => ({ name: basename(f.path).replace('app-style', 'app'), contents: f.contents }));
files.push({ name: 'index.html', contents: readFileSync(join(root, 'console', 'index.html')) });

mkdirSync(out, { recursive: true });
for (const { name, contents } of files) {
  const temp = join(out, `.${name}.${process.pid}.tmp`);
  writeFileSync(temp, contents);
  renameSync(temp, join(out, name));
}
