// StrykerJS mutation testing (TESTING.md): `npm run mutate`, or one part with MUTATE_GROUP.
// Not in CI: too slow for 2 cores. Run it when the modules below change.
import { chosenGroups } from './stryker.groups.mjs';

/** Reports (and the sandbox) are named after the groups run, so two groups can run side by side. */
const label = process.env.MUTATE_GROUP ? process.env.MUTATE_GROUP.split(',').map((s) => s.trim()).join('+') : 'all';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: 'stryker.vitest.config.mjs', related: false },
  coverageAnalysis: 'perTest',
  mutate: [...new Set(chosenGroups().flatMap((g) => g.mutate))],
  // dist/ is copied: merge and verify read their inputs on worker threads that run the compiled
  // scan-files.js (never mutated), also under vitest; `npm run mutate` builds it first.
  ignorePatterns: ['.stryker-tmp', 'reports', 'demo-archive', 'bench-output', 'test-output', '.bench-build*', 'RELIABILITY.md', 'BENCHMARKS.md'],
  concurrency: 2,
  timeoutMS: 15_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: `reports/mutation/${label}.html` },
  jsonReporter: { fileName: `reports/mutation/${label}.json` },
  incrementalFile: `reports/stryker-incremental-${label}.json`,
  tempDirName: `.stryker-tmp/${label}`,
  cleanTempDir: 'always',
};
