// eslint.config.js — the lint rules `npm test` enforces (issue 15): only rules that
// catch real bugs in udrbd, type-aware through typescript-eslint's project service
// (tsconfig.json for src/, tsconfig.test.json for test/ and vitest.config.ts,
// demo/rabbitmq/tsconfig.json for the RabbitMQ demo).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'native/**', 'node_modules/**', 'scripts/**/*.mjs', 'test/**/*.mjs', '**/*.js'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'demo/**/*.ts', 'vitest.config.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: {
        // test/tsconfig.json extends tsconfig.test.json; vitest.config.ts has no tsconfig of its own.
        projectService: { allowDefaultProject: ['vitest.config.ts'], defaultProject: 'tsconfig.test.json' },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits loses its rejection: await it, or `void` it with a reason.
      '@typescript-eslint/no-floating-promises': 'error',
      // An async function where a void callback is expected (event handlers, setTimeout) loses its errors.
      '@typescript-eslint/no-misused-promises': 'error',
      // A new state/packet/option kind must be handled everywhere it is switched on.
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true, requireDefaultForNonUnion: true },
      ],
      '@typescript-eslint/no-unnecessary-type-assertion': 'error',
    },
  },
);
