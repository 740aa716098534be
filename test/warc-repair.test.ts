import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanMembers, type MemberInfo } from '../storage/warc/gzip-members.js';
import { readWarc } from '../storage/warc/warc-reader.js';
import { describeWarc, repairOpenWarcs } from '../storage/warc/warc-repair.js';
import { WarcWriter } from '../storage/warc/warc-writer.js';
import { httpCapture } from './fixtures/http-capture.js';

// Crash repair (ARCHITECTURE.md "WARC files") on torn `.open` files built here byte by byte: what is kept is
// asserted to the byte, so cutting too little (a torn tail left in) and cutting one member too
// many both fail.

let tmp: string;
/** A whole `.open` WARC as a crash would leave it before any damage: warcinfo + 3 captures. */
let whole: Buffer;
let members: MemberInfo[];
const NAME = 'demo-20240501120000-00000-t.warc.gz';

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-repair-'));
  const dir = join(tmp, 'source');
  const writer = new WarcWriter({ dir, prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: { software: 'lifeboat-test' }, now: () => new Date('2024-05-01T12:00:00Z') });
  for (let i = 1; i <= 3; i++) await writer.writeCapture(httpCapture(`http://127.0.0.1:8080/p/${i}`, `body of post ${i} `.repeat(50 * i)));
  await writer.flush();
  await writer.abandon();
  const path = join(dir, `${NAME}.open`);
  whole = await readFile(path);
  members = [];
  for await (const m of scanMembers(path)) members.push(m);
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A fresh directory holding `bytes` as the torn `.open` file. */
async function torn(label: string, bytes: Buffer): Promise<string> {
  const dir = join(tmp, label);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${NAME}.open`), bytes);
  return dir;
}

async function recordsIn(path: string): Promise<{ records: number; defects: number }> {
  let records = 0;
  let defects = 0;
  for await (const item of readWarc(path)) {
    if (item.kind === 'defect') defects++;
    else records++;
  }
  return { records, defects };
}

/** Repairs `dir` and checks the one file left is exactly the first `keep` members of the original. */
async function expectKept(dir: string, keep: number, tornSize: number, badOffset: number | undefined): Promise<void> {
  const keptBytes = keep === 0 ? 0 : members[keep - 1]!.offset + members[keep - 1]!.length;
  const [report, ...more] = await repairOpenWarcs(dir);
  expect(more).toEqual([]);
  expect(report).toEqual({ name: NAME, size: keptBytes, sha256: sha256(whole.subarray(0, keptBytes)), records: keep, cutBytes: tornSize - keptBytes, badOffset, removed: false });
  expect(await readdir(dir)).toEqual([NAME]);
  const repaired = await readFile(join(dir, NAME));
  expect(repaired.length).toBe(keptBytes);
  expect(repaired.equals(whole.subarray(0, keptBytes))).toBe(true);
  expect(await recordsIn(join(dir, NAME))).toEqual({ records: keep, defects: 0 });
  // A second repair finds nothing to do and changes nothing.
  expect(await repairOpenWarcs(dir)).toEqual([]);
  expect((await readFile(join(dir, NAME))).length).toBe(keptBytes);
}

describe('repairOpenWarcs on torn .open files', () => {
  it('the source file: warcinfo + 3 × (request, response), one gzip member each, back to back', () => {
    expect(members).toHaveLength(7);
    members.forEach((m, i) => expect(m.offset).toBe(i === 0 ? 0 : members[i - 1]!.offset + members[i - 1]!.length));
    expect(members[6]!.offset + members[6]!.length).toBe(whole.length);
  });

  it('cut in the middle of the last member: keeps exactly the 6 members before it', async () => {
    const last = members[6]!;
    const cut = last.offset + Math.floor(last.length / 2);
    const dir = await torn('mid-member', whole.subarray(0, cut));
    await expectKept(dir, 6, cut, last.offset);
  });

  it('cut inside the gzip header of the last member (4 of its 10 header bytes written)', async () => {
    const last = members[6]!;
    const dir = await torn('mid-header', whole.subarray(0, last.offset + 4));
    await expectKept(dir, 6, last.offset + 4, last.offset);
  });

  it('cut one byte short of the end (the gzip trailer torn): the whole last member goes', async () => {
    const dir = await torn('mid-trailer', whole.subarray(0, whole.length - 1));
    await expectKept(dir, 6, whole.length - 1, members[6]!.offset);
  });

  it('cut exactly after a complete member: nothing is cut, everything is kept', async () => {
    const end = members[4]!.offset + members[4]!.length;
    const dir = await torn('after-member', whole.subarray(0, end));
    await expectKept(dir, 5, end, undefined);
  });

  it('the whole file intact (killed between an fsync and the rename): kept whole', async () => {
    const dir = await torn('intact', whole);
    await expectKept(dir, 7, whole.length, undefined);
  });

  it('zeros after the last complete member (a file system that extended the file): cut off', async () => {
    const dir = await torn('zeros', Buffer.concat([whole, Buffer.alloc(4096)]));
    await expectKept(dir, 7, whole.length + 4096, whole.length);
  });

  it('a damaged member in the middle: kept up to it, nothing after it', async () => {
    const bad = Buffer.from(whole);
    const m = members[3]!;
    bad[m.offset + 20]! ^= 0xff;
    const dir = await torn('damaged', bad);
    await expectKept(dir, 3, whole.length, m.offset);
  });

  it('torn right after the warcinfo: nothing worth keeping, the file is removed', async () => {
    const cut = members[1]!.offset + 7;
    const dir = await torn('only-warcinfo', whole.subarray(0, cut));
    expect(await repairOpenWarcs(dir)).toEqual([{ name: NAME, size: 0, sha256: '', records: 0, cutBytes: cut, badOffset: members[1]!.offset, removed: true }]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('an empty .open file (killed before the warcinfo was written) is removed', async () => {
    const dir = await torn('empty', Buffer.alloc(0));
    const [report] = await repairOpenWarcs(dir);
    expect(report).toMatchObject({ removed: true, cutBytes: 0 });
    expect(await readdir(dir)).toEqual([]);
  });

  it('a directory that does not exist has nothing to repair', async () => {
    expect(await repairOpenWarcs(join(tmp, 'no-such-dir'))).toEqual([]);
  });

  it('reports in name order, whatever order the directory lists them in', async () => {
    const dir = await torn('order', whole.subarray(0, members[6]!.offset + 3));
    await rm(join(dir, `${NAME}.open`));
    const names = ['00011', '00003', '00007', '00001', '00010', '00002', '00009', '00000', '00005', '00008', '00004', '00006'].map((n) => NAME.replace('-00000-', `-${n}-`));
    for (const n of names) await writeFile(join(dir, `${n}.open`), whole);
    expect((await repairOpenWarcs(dir)).map((r) => r.name)).toEqual([...names].sort());
  });

  it('describeWarc gives a closed file its size, sha256 and record count', async () => {
    const dir = await torn('describe', whole);
    await writeFile(join(dir, NAME), whole);
    expect(await describeWarc(join(dir, NAME), NAME)).toEqual({ name: NAME, size: whole.length, sha256: sha256(whole), records: 7 });
  });

  it('repairs every .open file of a directory and leaves closed files alone', async () => {
    const dir = await torn('several', whole.subarray(0, members[6]!.offset + 3));
    const second = NAME.replace('-00000-', '-00001-');
    const closed = NAME.replace('-00000-', '-00002-');
    await writeFile(join(dir, `${second}.open`), whole.subarray(0, members[5]!.offset + 2));
    await writeFile(join(dir, closed), whole);
    const reports = await repairOpenWarcs(dir);
    expect(reports.map((r) => [r.name, r.size, r.records])).toEqual([
      [NAME, members[6]!.offset, 6],
      [second, members[5]!.offset, 5],
    ]);
    expect((await readdir(dir)).sort()).toEqual([NAME, second, closed].sort());
    expect((await readFile(join(dir, closed))).equals(whole)).toBe(true);
  });
});
