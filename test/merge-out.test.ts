import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeShards } from '../storage/curate/merge.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { makeShard } from './fixtures/make-shard.js';

/** Every file under `dir` (recursively) with its size and sha256: a tree's fingerprint. */
async function treeHash(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out[p.slice(dir.length)] = `${(await stat(p)).size} ${createHash('sha256').update(await readFile(p)).digest('hex')}`;
    }
  };
  await walk(dir);
  return out;
}

async function leftovers(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (/-(wal|shm)$|\.lifeboat\.lock$/.test(e.name)) found.push(join(d, e.name));
    }
  };
  await walk(dir);
  return found;
}

describe('merge --out guard (issue 10 §3)', () => {
  let tmp: string;
  let a: string;
  let b: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-merge-out-'));
    a = join(tmp, 'shard-a');
    b = join(tmp, 'shard-b');
    await makeShard({ dir: a, start: 1, end: 30, node: 'alice' });
    await makeShard({ dir: b, start: 31, end: 50, node: 'bob' });
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('refuses a crawl shard as --out and leaves it byte for byte as it was', async () => {
    const before = await treeHash(b);
    await expect(mergeShards({ inputs: [a], out: b })).rejects.toMatchObject({ code: 'E_MERGE_OUT', message: expect.stringMatching(/shard-b is a crawl shard/) });
    expect(await treeHash(b)).toEqual(before);
    expect((await verifyPaths([b])).defectCount).toBe(0);
  });

  it('refuses a non-empty folder that is not a merge output, untouched', async () => {
    const other = join(tmp, 'photos');
    await mkdir(join(other, 'warcs'), { recursive: true });
    await writeFile(join(other, 'holiday.jpg'), 'not a merge');
    await writeFile(join(other, 'warcs', 'keep.txt'), 'mine');
    const before = await treeHash(other);
    await expect(mergeShards({ inputs: [a], out: other })).rejects.toMatchObject({ code: 'E_MERGE_OUT', message: expect.stringMatching(/not empty and not an earlier merge output \(it holds holiday\.jpg, warcs\)/) });
    expect(await treeHash(other)).toEqual(before);
  });

  it('merges into a new or empty folder, then extends that output incrementally, leaving no -wal/-shm or lock behind', async () => {
    const out = join(tmp, 'merged');
    await mkdir(out);
    const first = await mergeShards({ inputs: [a], out });
    expect(first.inputs.map((i) => i.status)).toEqual(['merged']);
    const second = await mergeShards({ inputs: [a, b], out });
    expect(second.inputs.map((i) => i.status)).toEqual(['skipped', 'merged']);
    expect((await verifyPaths([out])).defectCount).toBe(0);
    expect(await leftovers(out)).toEqual([]);
    expect(await leftovers(a)).toEqual([]);
  });
});
