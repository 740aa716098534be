import { execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeShards } from '../storage/curate/merge.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { makeShard } from './fixtures/make-shard.js';

/**
 * Issue 11 §4: hostile shards never hang `verify`/`merge`, and what is good in them is kept.
 * Each case takes a copy of one good shard and plants one hostile thing in it.
 */
let tmp: string;
let good: string;
let goodRecords: number;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-curator-hostile-'));
  good = join(tmp, 'good');
  await makeShard({ dir: good, start: 1, end: 30 });
  const report = await verifyPaths([good]);
  expect(report.defects).toEqual([]);
  goodRecords = report.records;
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function copyShard(name: string): Promise<string> {
  const dir = join(tmp, name);
  await cp(good, dir, { recursive: true });
  return dir;
}

/** Verifies and merges `dir`; both must come back (no hang, no throw), with the good WARC read in full. */
async function checkBoth(dir: string, name: string) {
  const verify = await verifyPaths([dir], { tmpDir: tmp });
  const merge = await mergeShards({ inputs: [dir], out: join(tmp, `${name}-merged`) });
  expect(verify.records).toBe(goodRecords);
  expect(merge.recordsRead).toBe(goodRecords);
  return { verify, merge, whats: [...verify.defects, ...merge.defects].map((d) => `${d.file}: ${d.what}`) };
}

describe('hostile files in warcs/ are reported, never read', () => {
  it('a FIFO named like a WARC (used to hang verify and merge)', async () => {
    const dir = await copyShard('fifo');
    execFileSync('mkfifo', [join(dir, 'warcs', 'zz-pipe.warc.gz')]);
    const { verify, merge } = await checkBoth(dir, 'fifo');
    expect(verify.defects).toContainEqual({ file: join(dir, 'warcs', 'zz-pipe.warc.gz'), what: expect.stringMatching(/FIFO/) });
    expect(merge.defects).toContainEqual({ file: join(dir, 'warcs', 'zz-pipe.warc.gz'), offset: undefined, what: expect.stringMatching(/FIFO/) });
  });

  it('a link to /dev/zero (used to hang merge forever)', async () => {
    const dir = await copyShard('zero');
    await symlink('/dev/zero', join(dir, 'warcs', 'zero.warc.gz'));
    const { whats } = await checkBoth(dir, 'zero');
    expect(whats.filter((w) => /zero\.warc\.gz: a symbolic link to \/dev\/zero, outside the shard/.test(w))).toHaveLength(2);
  });

  it('a link to /etc/passwd is not read; a link to a regular file inside the shard is', async () => {
    const dir = await copyShard('passwd');
    await symlink('/etc/passwd', join(dir, 'warcs', 'passwd.warc.gz'));
    const { whats, merge } = await checkBoth(dir, 'passwd');
    expect(whats.filter((w) => /passwd\.warc\.gz: a symbolic link to \/etc\/passwd, outside the shard; not read/.test(w))).toHaveLength(2);
    expect(merge.defects.some((d) => /root:/.test(d.what))).toBe(false);

    const linked = join(tmp, 'linked');
    await mkdir(join(linked, 'warcs'), { recursive: true });
    await cp(join(good, 'shard.sqlite'), join(linked, 'shard.sqlite'));
    await cp(join(good, 'shard.json'), join(linked, 'shard.json'));
    const name = (await readdir(join(good, 'warcs')))[0]!;
    await mkdir(join(linked, 'store'));
    await cp(join(good, 'warcs', name), join(linked, 'store', name));
    await symlink(join('..', 'store', name), join(linked, 'warcs', name));
    expect((await verifyPaths([linked], { tmpDir: tmp })).defects).toEqual([]);
  });

  it('a FIFO or a /dev/zero link as shard.json: verify reports it, merge refuses the shard naming it (no hang)', async () => {
    const fifo = await copyShard('manifest-fifo');
    await rm(join(fifo, 'shard.json'));
    execFileSync('mkfifo', [join(fifo, 'shard.json')]);
    const report = await verifyPaths([fifo], { tmpDir: tmp });
    expect(report.defects).toContainEqual({ file: join(fifo, 'shard.json'), what: `${join(fifo, 'shard.json')}: a FIFO (named pipe), not a regular file; not read` });
    expect(report.records).toBe(goodRecords);
    const zero = await copyShard('manifest-zero');
    await rm(join(zero, 'shard.json'));
    await symlink('/dev/zero', join(zero, 'shard.json'));
    await expect(mergeShards({ inputs: [zero], out: join(tmp, 'manifest-zero-merged') })).rejects.toThrow(/shard\.json: a symbolic link to \/dev\/zero, outside the shard; not read/);
  });

  it('a directory named x.warc.gz (used to throw EISDIR)', async () => {
    const dir = await copyShard('dir');
    await mkdir(join(dir, 'warcs', 'x.warc.gz'));
    const { whats } = await checkBoth(dir, 'dir');
    expect(whats.filter((w) => /x\.warc\.gz: a directory, not a regular file/.test(w))).toHaveLength(2);
  });
});

describe('a bad shard.sqlite is a defect; the WARCs are still checked and merged by their records', () => {
  const cases: [string, (path: string) => Promise<void>, RegExp][] = [
    ['corrupt bytes', async (p) => writeFile(p, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(8192, 0xa5)])), /not a SQLite database|damaged|malformed/],
    ['random bytes', async (p) => writeFile(p, Buffer.alloc(20_000, 'garbage!')), /not a SQLite database/],
    [
      'foreign schema',
      async (p) => {
        await rm(p);
        const db = new Database(p);
        db.exec('CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT); INSERT INTO photos (path) VALUES (\'a.jpg\')');
        db.close();
      },
      /not a lifeboat database \(no table meta, ids, captures, posts, urls\)/,
    ],
    ['empty file', async (p) => writeFile(p, ''), /empty file \(0 bytes\)/],
  ];
  for (const [name, spoil, expected] of cases) {
    it(name, async () => {
      const dir = await copyShard(`db-${name.replace(/ /g, '-')}`);
      const dbPath = join(dir, 'shard.sqlite');
      await spoil(dbPath);
      const { verify, merge } = await checkBoth(dir, `db-${name}`);
      expect(verify.defects).toContainEqual({ file: dbPath, what: expect.stringMatching(expected) });
      expect(merge.defects).toContainEqual({ file: dbPath, offset: undefined, what: expect.stringMatching(expected) });
      expect(merge.recordsKept).toBeGreaterThan(0);
      expect(merge.cdxjLines).toBeGreaterThan(0);
    });
  }

  it('a database whose archived IDs fall short of shard.json is a defect (not "0 defects")', async () => {
    const dir = await copyShard('db-emptied');
    const db = new Database(join(dir, 'shard.sqlite'));
    db.exec(`DELETE FROM ids; DELETE FROM captures`);
    db.close();
    const manifest = JSON.parse(await readFile(join(dir, 'shard.json'), 'utf8')) as { counts: { archived: number } };
    const report = await verifyPaths([dir], { tmpDir: tmp });
    expect(report.defects).toContainEqual({ file: join(dir, 'shard.sqlite'), what: `0 archived IDs, but shard.json counts ${manifest.counts.archived}` });
  });
});

describe('inputs are never changed', () => {
  it('a read-only shard left by a crash (with its -wal) verifies and merges with 0 defects, its WAL read, nothing written', async (ctx) => {
    // A crawl killed mid-run leaves shard.sqlite-wal holding its last commits: copy the files while a writer has them open.
    const live = await copyShard('readonly-live');
    const dir = join(tmp, 'readonly');
    await mkdir(dir);
    const writer = new Database(join(live, 'shard.sqlite'));
    writer.pragma('wal_autocheckpoint = 0');
    const failed = writer.prepare(`UPDATE ids SET status = 'gone' WHERE status = 'failed'`).run().changes;
    expect(failed).toBeGreaterThan(0);
    await cp(live, dir, { recursive: true, filter: (src) => !src.endsWith('-shm') });
    writer.close();
    expect(await readdir(dir)).toContain('shard.sqlite-wal');
    const before = (await readdir(dir)).sort();
    let target = dir;
    let mounted = false;
    if (process.getuid?.() === 0) {
      // root ignores permission bits: a read-only bind mount is the real thing.
      target = join(tmp, 'ro-mount');
      await mkdir(target);
      try {
        execFileSync('mount', ['--bind', dir, target]);
        mounted = true;
        execFileSync('mount', ['-o', 'remount,bind,ro', target]);
      } catch (err) {
        if (mounted) execFileSync('umount', ['-l', target]);
        if (process.env.LIFEBOAT_REQUIRE_ALL === '1') throw err;
        ctx.skip(); // no mount permission in this container
      }
    } else execFileSync('chmod', ['-R', 'a-w', dir]);
    try {
      const verify = await verifyPaths([target], { tmpDir: tmp });
      expect(verify.defects).toEqual([]);
      expect(verify.counts.ids).toMatchObject({ archived: expect.any(Number), gone: failed });
      expect(verify.counts.ids!.failed).toBeUndefined();
      const merge = await mergeShards({ inputs: [target], out: join(tmp, 'readonly-merged') });
      expect(merge.defects).toEqual([]);
      expect(merge.coverage.statuses).toMatchObject({ archived: verify.counts.ids!.archived });
    } finally {
      if (mounted) execFileSync('umount', ['-l', target]);
      else execFileSync('chmod', ['-R', 'u+w', dir]);
    }
    expect((await readdir(dir)).sort()).toEqual(before);
  });

  it('verify and merge of a writable shard leave no -wal/-shm either', async () => {
    const dir = await copyShard('writable');
    const before = (await readdir(dir)).sort();
    await checkBoth(dir, 'writable');
    expect((await readdir(dir)).sort()).toEqual(before);
  });

  it('merge reports a WARC changed after shard.json was written, and keeps its good records', async () => {
    const dir = await copyShard('changed');
    const name = (await readdir(join(dir, 'warcs')))[0]!;
    const data = await readFile(join(dir, 'warcs', name));
    // Replaced by a copy one byte longer (a stray byte at the end): the records are all still there.
    await writeFile(join(dir, 'warcs', name), Buffer.concat([data, Buffer.from('\n')]));
    const merge = await mergeShards({ inputs: [dir], out: join(tmp, 'changed-merged') });
    expect(merge.defects).toContainEqual({
      file: join(dir, 'warcs', name),
      offset: undefined,
      what: `changed since shard.json was written (size ${data.length + 1}, shard.json says ${data.length}); merged by its records, each checked on its own digests`,
    });
    expect(merge.recordsRead).toBe(goodRecords);
  });
});
