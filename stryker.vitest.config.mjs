// The vitest configuration Stryker runs: only the tests of the chosen mutation groups
// (stryker.groups.mjs), in that order, so a mutant meets the fast unit tests first.
//
// It also works round stryker-js#6150 (open in 9.6.1 and 10.0.0): the vitest runner builds a
// mutant's result from the tests it collected, so a mutant that makes a test file fail to load
// (a module-level table that throws on import, a describe body that throws) collects no test and
// is scored Survived. The reporter below gives such a file or suite one failed test carrying its
// load error, so the mutant is scored Killed — which it is: the suite fails.
import { BaseSequencer } from 'vitest/node';
import { defineConfig } from 'vitest/config';
import { chosenTests } from './stryker.groups.mjs';

const tests = chosenTests();
const rank = (file) => {
  const i = tests.findIndex((t) => file.endsWith(t));
  return i < 0 ? tests.length : i;
};

function hasTest(task) {
  return task.type === 'test' || (task.tasks ?? []).some(hasTest);
}

function markLoadFailures(suite, file) {
  if (suite.result?.state === 'fail' && !hasTest(suite)) {
    suite.tasks.push({
      type: 'test',
      id: `${suite.id}_load`,
      name: 'loads (stryker: failed before any test ran)',
      mode: 'run',
      file,
      suite: suite === file ? file : suite,
      meta: {},
      annotations: [],
      result: { state: 'fail', errors: suite.result.errors ?? [{ message: 'failed to load' }] },
    });
    return;
  }
  for (const t of suite.tasks ?? []) if (t.type === 'suite') markLoadFailures(t, file);
}

class LoadFailureAsFailedTest {
  onTestRunEnd(testModules) {
    for (const m of testModules) markLoadFailures(m.task, m.task);
  }
}

class GroupOrder extends BaseSequencer {
  async sort(files) {
    return [...files].sort((a, b) => rank(a.moduleId) - rank(b.moduleId));
  }
}

export default defineConfig({
  test: {
    include: tests,
    setupFiles: ['./stryker.vitest.setup.mjs'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    sequence: { sequencer: GroupOrder },
    reporters: [new LoadFailureAsFailedTest()],
  },
});
