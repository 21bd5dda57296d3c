import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', '.tools/', '.cynode/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      'no-console': 'error',
    },
  },
  {
    // Tests assert on arbitrary JSON answers; typing every body would say nothing more.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // The examples are plain Node scripts.
    files: ['examples/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', Response: 'readonly' } },
  },
  {
    files: ['src/cli/**/*.ts', 'scripts/**', 'bench/**', 'eslint.config.js', 'ava.config.mjs'],
    rules: { 'no-console': 'off' },
  },
);
