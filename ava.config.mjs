// Tests are TypeScript, loaded through tsx; each file runs in its own process so PGlite,
// opa-wasm instances and spawned gateways never share state between files.
export default {
  files: ['test/**/*.test.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  concurrency: 2,
  timeout: '2m',
};
