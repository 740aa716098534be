import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ZipWriter } from '../storage/export/zip-writer.js';

const run = promisify(execFile);
const JAVA_CHECK = fileURLToPath(new URL('./fixtures/ZipStreamCheck.java', import.meta.url));
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-zip-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Python's zipfile (central directory): entry count, and every entry's sha256 checked with testzip(). */
async function centralListing(file: string): Promise<{ count: number; first: string; last: string; bad: string | null }> {
  const script = `
import zipfile, json, sys
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
print(json.dumps({"count": len(names), "first": names[0], "last": names[-1], "bad": z.testzip()}))`;
  const { stdout } = await run('python3', ['-c', script, file]);
  return JSON.parse(stdout) as { count: number; first: string; last: string; bad: string | null };
}

describe('ZipWriter (WACZ container, issue 15 §2)', () => {
  it('writes ZIP64 end records when the entries outnumber 65,535, readable both streaming and by central directory', async () => {
    const file = join(tmp, 'many.zip');
    const zip = await ZipWriter.create(file);
    const n = 65_540;
    for (let i = 0; i < n; i++) await zip.addBuffer(`e/${i}.txt`, Buffer.from(`entry ${i}\n`));
    await zip.close();
    expect(await centralListing(file)).toEqual({ count: n, first: 'e/0.txt', last: `e/${n - 1}.txt`, bad: null });
    expect((await run('unzip', ['-tq', file], { maxBuffer: 16 * 1024 * 1024 })).stdout).toMatch(/^No errors detected/);
    // The classic end record cannot hold the count: it says 0xFFFF and a ZIP64 locator and record carry it.
    const data = await readFile(file);
    const end = data.subarray(data.length - 22);
    expect([end.readUInt32LE(0), end.readUInt16LE(10)]).toEqual([0x06054b50, 0xffff]);
    const locator = data.subarray(data.length - 42, data.length - 22);
    expect(locator.readUInt32LE(0)).toBe(0x07064b50);
    const record = data.subarray(Number(locator.readBigUInt64LE(8)));
    expect([record.readUInt32LE(0), Number(record.readBigUInt64LE(32))]).toEqual([0x06064b50, n]);
    const { stdout } = await run('java', [JAVA_CHECK, file], { maxBuffer: 64 * 1024 * 1024 });
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(n);
    expect(lines[n - 1]).toBe(`e/${n - 1}.txt\t0\t${`entry ${n - 1}\n`.length}\t${createHash('sha256').update(`entry ${n - 1}\n`).digest('hex')}`);
  }, 120_000);

  it('streams a file entry once, returning its sha256 and size, with the CRC patched into its local header', async () => {
    const src = join(tmp, 'src.bin');
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
    await writeFile(src, data);
    const file = join(tmp, 'one.zip');
    const zip = await ZipWriter.create(file);
    expect(await zip.addFile('x.bin', src)).toEqual({ name: 'x.bin', bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    await zip.addBuffer('y.txt', Buffer.from('y'));
    await zip.close();
    expect(await centralListing(file)).toEqual({ count: 2, first: 'x.bin', last: 'y.txt', bad: null });
    const head = (await readFile(file)).subarray(0, 30);
    expect(head.readUInt16LE(6) & 8).toBe(0);
    expect(head.readUInt32LE(14)).toBe(crc32(data));
    expect(head.readUInt32LE(18)).toBe(data.length);
  });
});
