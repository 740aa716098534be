// StrykerJS mutation testing (TESTING.md): `npm run mutate`, or one part with MUTATE_GROUP.
// Not in CI: too slow for 2 cores. Run it when the modules below change.
import { chosenGroups } from './stryker.groups.mjs';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: 'stryker.vitest.config.mjs', related: false },
  coverageAnalysis: 'perTest',
  mutate: [...new Set(chosenGroups().flatMap((g) => g.mutate))],
  ignorePatterns: ['dist', 'reports', 'demo-archive', 'bench-output', 'test-output', '.bench-build*', 'RELIABILITY.md', 'BENCHMARKS.md'],
  concurrency: 2,
  timeoutMS: 15_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  incrementalFile: 'reports/stryker-incremental.json',
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
