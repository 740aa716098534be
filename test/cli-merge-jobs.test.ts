import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { makeShard } from './fixtures/make-shard.js';

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: process.env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('lifeboat merge/verify --jobs and merge --index-only on the command line (issue 25)', () => {
  let tmp: string;
  let a: string;
  let b: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-cli-jobs-'));
    a = join(tmp, 'a');
    b = join(tmp, 'b');
    await makeShard({ dir: a, start: 1, end: 40, node: 'alice', warcSizeBytes: 16 * 1024 });
    await makeShard({ dir: b, start: 30, end: 70, node: 'bob', warcSizeBytes: 16 * 1024 });
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('merge --index-only --jobs 2 says what it left in place and did not re-check; verify and status read the result', async () => {
    const out = join(tmp, 'idx');
    const m = await run(['merge', a, b, '--out', out, '--index-only', '--jobs', '2']);
    expect(m.code).toBe(0);
    expect(m.stdout).toMatch(/, 2 jobs\n/);
    expect(m.stdout).toMatch(/index-only: \d+ input WARCs left in place and referenced from indexes\/index\.cdxj \(nothing copied\)\. (\d+) matched their shard\.json \(size and sha256\), so their records' sha1 block and payload digests were not recomputed; 0 had no matching shard\.json entry/);
    const v = await run(['verify', out, '--jobs', '1']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/; 0 defects\n$/);
    const s = await run(['status', out]);
    expect(s.stdout).toMatch(/\.\.\/a\/warcs\/[^ ]+\.warc\.gz/);
  });

  it('refuses a bad --jobs (the usage error names it, then the help) and --warc-size with --index-only (one line); exit 2', async () => {
    for (const args of [['merge', a, '--out', join(tmp, 'x'), '--jobs', '0'], ['verify', a, '--jobs', 'two']]) {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.stderr.split('\n')[0]).toMatch(/--jobs must be a positive integer, got "(0|two)"/);
    }
    const r = await run(['merge', a, '--out', join(tmp, 'y'), '--index-only', '--warc-size', '1M']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/--warc-size has no effect with --index-only/)]);
  });
});
