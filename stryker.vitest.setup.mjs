// Loaded only by the vitest configuration Stryker runs (stryker.vitest.config.mjs), it skips:
// - the scale tests that time seeding a million items (11-13 s each). Every mutant they would
//   judge is judged by the store contract's other seeding tests; with them in, a surviving store
//   mutant cost ~25 s and the tracker stores could not be mutated in a working session;
// - tests that run the compiled CLI from dist/ (a kill -9 of a child process): they never see
//   a mutant (Stryker mutates the TypeScript sources) and the sandbox holds no dist/.
import { beforeEach } from 'vitest';

const SKIPPED = [/seeds 1,000,000 items/, /killed with -9 in the middle of a multipart upload/];

beforeEach((ctx) => {
  const fullName = `${ctx.task.suite?.name ?? ''} ${ctx.task.name}`;
  if (SKIPPED.some((re) => re.test(fullName))) ctx.skip();
});
