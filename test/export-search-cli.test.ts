import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import type { SearchHit } from '../storage/curate/post-search.js';
import { makeShard, statusFor } from './fixtures/make-shard.js';

/**
 * `lifeboat export` as a user runs it (issue 10 §3) and `lifeboat search` (issue 15 §7), through
 * the CLI in-process. The fixture posts: author `user{id % 13}`, text `Post number {id}`, created
 * on 2024-04-{1 + id % 28}; IDs divisible by 7 are missing and by 11 failed.
 */
let tmp: string;
let merged: string;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: process.env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const archived = (pred: (id: number) => boolean): number[] => Array.from({ length: 60 }, (_, i) => i + 1).filter((id) => statusFor(id) === 'archived' && pred(id));
const ids = (stdout: string): number[] => stdout.trimEnd().split('\n').filter(Boolean).map((l) => Number(l.split(' ', 1)[0]));

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-export-search-'));
  await makeShard({ dir: join(tmp, 'a'), start: 1, end: 40, node: 'alice' });
  await makeShard({ dir: join(tmp, 'b'), start: 30, end: 60, node: 'bob', variant: 'edited', variantIds: (id) => id === 32 });
  merged = join(tmp, 'merged');
  const m = await cli(['merge', join(tmp, 'a'), join(tmp, 'b'), '--out', merged]);
  expect(m.code, m.stderr).toBe(0);
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('lifeboat export (issue 10 §3)', () => {
  it('refuses a --wacz path whose folder does not exist: one line, exit 2, nothing written', async () => {
    const r = await cli(['export', merged, '--wacz', join(tmp, 'no-such-folder', 'x.wacz')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`${join(tmp, 'no-such-folder')} does not exist`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    await expect(stat(join(tmp, 'no-such-folder'))).rejects.toThrow();
    const dir = await cli(['export', merged, '--wacz', tmp]);
    expect([dir.code, dir.stderr]).toEqual([2, `lifeboat: cannot write ${tmp}: it is a directory (give a file name such as ${join(tmp, 'archive.wacz')})\n`]);
  });

  it('prints numbers in its summary, for a merged directory and for a shard', async () => {
    for (const [dir, name] of [
      [merged, 'm.wacz'],
      [join(tmp, 'a'), 'a.wacz'],
    ] as const) {
      const r = await cli(['export', dir, '--wacz', join(tmp, name)]);
      expect(r.code, r.stderr).toBe(0);
      const size = (await stat(join(tmp, name))).size;
      const warcs = (await readdir(join(dir, 'warcs'))).length;
      const m = /: (\d+) bytes, (\d+) files \((\d+) WARCs\), (\d+) pages; main page (\S+)\n$/.exec(r.stdout);
      expect(m, r.stdout).not.toBeNull();
      expect(Number(m![1])).toBe(size);
      expect(Number(m![2])).toBe(warcs + 2); // + index + pages
      expect(Number(m![3])).toBe(warcs);
      expect(Number(m![4])).toBe(archived((id) => id <= (dir === merged ? 60 : 40)).length);
      expect(m![5]).toBe('http://127.0.0.1:8080/p/1');
    }
  });

  it('refuses a directory that is neither a merge nor a shard, exit 2', async () => {
    const r = await cli(['export', tmp, '--wacz', join(tmp, 'x.wacz')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is neither a merged directory .* nor a crawl shard/);
  });
});

describe('lifeboat search (issue 15 §7)', () => {
  it('finds a post by its words: ID, date, author, a snippet and the archived URL', async () => {
    const r = await cli(['search', merged, 'number 40']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('40  2024-04-13 10:00:00  user1  Post [number] [40]  http://127.0.0.1:8080/p/40\n');
    expect(r.stderr).toBe('1 post found\n');
  });

  it('filters by author and date range, limits, and prints JSON', async () => {
    const byAuthor = await cli(['search', merged, '', '--author', 'user3']);
    expect(ids(byAuthor.stdout).sort((x, y) => x - y)).toEqual(archived((id) => id % 13 === 3));
    const day = await cli(['search', merged, 'post', '--since', '2024-04-10', '--until', '2024-04-10']);
    expect(ids(day.stdout).sort((x, y) => x - y)).toEqual(archived((id) => 1 + (id % 28) === 10));
    const both = await cli(['search', merged, 'number', '--author', '@user3', '--since', '2024-04-05T00:00:00Z']);
    expect(ids(both.stdout).sort((x, y) => x - y)).toEqual(archived((id) => id % 13 === 3 && 1 + (id % 28) >= 5));
    const limited = await cli(['search', merged, 'number', '--limit', '2']);
    expect(ids(limited.stdout)).toHaveLength(2);
    const json = await cli(['search', merged, 'number 40', '--json']);
    expect(JSON.parse(json.stdout) as SearchHit).toEqual({ id: 40, date: '2024-04-13T10:00:00.000Z', author: 'user1', title: null, url: 'http://127.0.0.1:8080/p/40', snippet: 'Post [number] [40]' });
  });

  it('finds both versions of an edited post, each once, though two shards hold the unedited one', async () => {
    const r = await cli(['search', merged, 'number 32', '--json']);
    const hits = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as SearchHit);
    expect(hits.map((h) => [h.id, h.snippet]).sort()).toEqual([
      [32, 'Post [number] [32]'],
      [32, 'Post [number] [32] (edited)'],
    ]);
    const plain = await cli(['search', merged, 'number 34', '--json']); // in both shards, same text
    expect(plain.stdout.trimEnd().split('\n')).toHaveLength(1);
  });

  it('indexes what an incremental merge adds, and leaves no -wal/-shm files behind', async () => {
    const inc = join(tmp, 'inc');
    expect((await cli(['merge', join(tmp, 'a'), '--out', inc])).code).toBe(0);
    expect(ids((await cli(['search', inc, 'number 50'])).stdout)).toEqual([]);
    expect((await cli(['merge', join(tmp, 'b'), '--out', inc])).code).toBe(0);
    expect(ids((await cli(['search', inc, 'number 50'])).stdout)).toEqual([50]);
    expect((await cli(['export', inc, '--wacz', join(tmp, 'inc.wacz')])).code).toBe(0);
    expect((await readdir(inc)).filter((n) => /-(wal|shm)$/.test(n))).toEqual([]);
  });

  it('takes words FTS5 cannot parse as plain words; refuses a bad date and a directory that is not a merge (exit 2)', async () => {
    const odd = await cli(['search', merged, '"number 40']);
    expect(odd.code, odd.stderr).toBe(0);
    expect(ids(odd.stdout)).toEqual([40]);
    const bad = await cli(['search', merged, 'x', '--since', 'yesterday']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since yesterday: not a date/);
    const notMerged = await cli(['search', join(tmp, 'a'), 'x']);
    expect(notMerged.code).toBe(2);
    expect(notMerged.stderr).toMatch(/is not a merged directory/);
  });
});
