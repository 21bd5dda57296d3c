// Builds the operator console into dist/console/: console/src/main.ts bundled by esbuild into
// one ES module (no runtime fetches, no CDN), its stylesheet, and index.html. The gateway
// serves exactly these files at /console under a strict Content-Security-Policy.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'console');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, 'console', 'src', 'main.ts'), join(root, 'console', 'src', 'app.css')],
  outdir: out,
  entryNames: '[name]',
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
});
// esbuild names the script after its entry point; the page loads /console/assets/app.js.
copyFileSync(join(out, 'main.js'), join(out, 'app.js'));
rmSync(join(out, 'main.js'));
copyFileSync(join(root, 'console', 'index.html'), join(out, 'index.html'));
