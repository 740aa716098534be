/**
 * What `npm run mutate` mutates, and the tests that judge each part (fastest first: Stryker
 * stops a mutant's run at its first failing test). `MUTATE_GROUP=merge npm run mutate` runs one
 * group; `MUTATE_GROUP=merge,upload` several. Line ranges keep the upload modules to their
 * verification code (the transfer code is guarded by the upload tests and benchmarks instead).
 */
export const GROUPS = {
  'group-commit': {
    mutate: ['storage/shard/group-commit.ts', 'storage/shard/shard-recorder.ts'],
    tests: ['test/durability.test.ts', 'test/shard-recorder.test.ts', 'test/revisit.test.ts'],
  },
  'warc-repair': {
    mutate: ['storage/warc/warc-repair.ts'],
    tests: ['test/warc-repair.test.ts', 'test/merge.test.ts'],
  },
  merge: {
    mutate: ['storage/curate/merge-db.ts', 'storage/curate/merge-output.ts'],
    tests: ['test/merge-dedupe.test.ts', 'test/db-readers.test.ts', 'test/merge-records.test.ts', 'test/merge.test.ts'],
  },
  upload: {
    mutate: ['storage/upload/s3.ts:157-289', 'storage/upload/ia.ts:228-263', 'storage/upload/ia.ts:338-427'],
    tests: ['test/upload-verify.test.ts', 'test/upload-ia.test.ts', 'test/upload-s3.test.ts'],
  },
  'scope-guard': {
    mutate: ['crawler/fetch/scope-guard.ts'],
    tests: ['test/scope-guard.test.ts'],
  },
  'host-limiter': {
    mutate: ['crawler/fetch/host-limiter.ts'],
    tests: ['test/host-limiter.test.ts', 'test/host-limiter-details.test.ts'],
  },
  'warc-writer': {
    mutate: ['storage/warc/warc-writer.ts'],
    tests: ['test/warc-writer.test.ts', 'test/warc-writer-paths.test.ts', 'test/warc-writer-faults.test.ts', 'test/warc-repair.test.ts', 'test/durability.test.ts', 'test/warc-compress.test.ts', 'test/warc-reader.test.ts', 'test/merge-dedupe.test.ts', 'test/revisit.test.ts'],
  },
  'tracker-stores': {
    mutate: ['tracker/store/rules.ts', 'tracker/store/schema.ts', 'tracker/store/sqlite-store.ts', 'tracker/store/sqlite-reports.ts', 'tracker/store/postgres-store.ts', 'tracker/store/postgres-reports.ts'],
    tests: ['test/tracker-store-parity.test.ts', 'test/tracker-store.test.ts', 'test/tracker-media-store.test.ts', 'test/tracker-deadline-store.test.ts'],
  },
};

/** The groups chosen by MUTATE_GROUP (all when unset). */
export function chosenGroups(env = process.env) {
  const names = env.MUTATE_GROUP ? env.MUTATE_GROUP.split(',').map((s) => s.trim()) : Object.keys(GROUPS);
  for (const n of names) if (!GROUPS[n]) throw new Error(`MUTATE_GROUP: unknown group ${n} (known: ${Object.keys(GROUPS).join(', ')})`);
  return names.map((n) => GROUPS[n]);
}

/** Test files of the chosen groups, in order, each once. */
export function chosenTests(env = process.env) {
  return [...new Set(chosenGroups(env).flatMap((g) => g.tests))];
}
