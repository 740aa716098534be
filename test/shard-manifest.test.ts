import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readManifest, writeManifest, type ShardManifest } from '../storage/shard/shard-manifest.js';
import { listShardFiles } from '../storage/upload/shard-files.js';

const root = mkdtempSync(join(tmpdir(), 'lifeboat-manifest-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function shardWith(manifest: string | undefined): string {
  const dir = join(root, `s${n++}`);
  mkdirSync(join(dir, 'warcs'), { recursive: true });
  if (manifest !== undefined) writeFileSync(join(dir, 'shard.json'), manifest);
  return dir;
}

describe('readManifest: the one reader of shard.json', () => {
  it('reads back what writeManifest wrote', async () => {
    const dir = shardWith(undefined);
    const m: ShardManifest = {
      format: 'lifeboat-shard-1', software: 'lifeboat/0.1.0', profile: 'demo', node: 'n1', ranges: '1-10',
      counts: { archived: 9, failed: 1 }, warcs: [{ name: 'a.warc.gz', size: 10, sha256: 'ab', records: 3 }], updated_at: '2026-01-01T00:00:00Z',
    };
    await writeManifest(dir, m);
    expect(await readManifest(dir)).toEqual(m);
  });

  it('is undefined without a shard.json, and takes a foreign one with fields missing or extra (ranges as a list too)', async () => {
    expect(await readManifest(shardWith(undefined))).toBeUndefined();
    const m = await readManifest(shardWith(JSON.stringify({ ranges: ['1-5', '9'], extra: { x: 1 }, warcs: [{ name: 'b.warc.gz' }] })));
    expect(m).toEqual({ ranges: ['1-5', '9'], extra: { x: 1 }, warcs: [{ name: 'b.warc.gz' }] });
  });

  it('refuses a field of the wrong type, naming the file and the field', async () => {
    const dir = shardWith(JSON.stringify({ counts: { archived: '5' } }));
    await expect(readManifest(dir)).rejects.toMatchObject({ code: 'E_MANIFEST', message: expect.stringMatching(new RegExp(`^${join(dir, 'shard.json')}: not a shard manifest: counts\\.archived: `)) });
    await expect(readManifest(shardWith('{"warcs": 5}'))).rejects.toMatchObject({ code: 'E_MANIFEST', message: expect.stringContaining('not a shard manifest: warcs: ') });
    await expect(readManifest(shardWith('[1, 2]'))).rejects.toMatchObject({ code: 'E_MANIFEST', message: expect.stringContaining('not a shard manifest: (top level): ') });
  });

  it('refuses JSON that does not parse and a WARC name that leaves warcs/', async () => {
    await expect(readManifest(shardWith('{"warcs": ['))).rejects.toMatchObject({ code: 'E_MANIFEST', message: expect.stringContaining('not valid JSON') });
    await expect(readManifest(shardWith(JSON.stringify({ warcs: [{ name: '../../etc/passwd.warc.gz' }] })))).rejects.toMatchObject({
      code: 'E_MANIFEST',
      message: expect.stringContaining('is not a plain file name'),
    });
  });

  it('is the reader the upload uses: a malformed shard.json stops the listing before anything is sent', async () => {
    const dir = shardWith(JSON.stringify({ warcs: [{ name: 'a.warc.gz', size: 'big' }] }));
    writeFileSync(join(dir, 'warcs', 'a.warc.gz'), 'x');
    await expect(listShardFiles(dir)).rejects.toMatchObject({ code: 'E_MANIFEST', message: expect.stringContaining('warcs.0.size') });
  });
});
