// The vitest configuration Stryker runs: only the tests of the chosen mutation groups
// (stryker.groups.mjs), in that order, so a mutant meets the fast unit tests first.
import { BaseSequencer } from 'vitest/node';
import { defineConfig } from 'vitest/config';
import { chosenTests } from './stryker.groups.mjs';

const tests = chosenTests();
const rank = (file) => {
  const i = tests.findIndex((t) => file.endsWith(t));
  return i < 0 ? tests.length : i;
};

class GroupOrder extends BaseSequencer {
  async sort(files) {
    return [...files].sort((a, b) => rank(a.moduleId) - rank(b.moduleId));
  }
}

export default defineConfig({
  test: {
    include: tests,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    sequence: { sequencer: GroupOrder },
  },
});
