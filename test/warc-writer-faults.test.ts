import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanMembers } from '../storage/warc/gzip-members.js';
import { readWarc, type ReadRecord } from '../storage/warc/warc-reader.js';
import { WarcWriter, type ClosedWarc, type WarcWriterOptions } from '../storage/warc/warc-writer.js';
import { httpCapture } from './fixtures/http-capture.js';

// What the WARC writer promises when something fails under it (a file it cannot create, a body
// that cannot be read, a full disk, a failed fsync at rotation), and the offsets and bytes of its
// copy path across files and past its 8 MiB read chunk. Found unguarded by the mutation run
// (TESTING.md "Mutation testing"). Failed fsyncs cannot be made on demand with a real disk: as in
// warc-writer-paths.test.ts, the file handle's sync is made to fail (or to start late) once.

let tmp: string;
let n = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-writer-faults-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function writer(extra: Partial<WarcWriterOptions> = {}): { w: WarcWriter; dir: string; closed: ClosedWarc[] } {
  const dir = join(tmp, `w${n++}`);
  const closed: ClosedWarc[] = [];
  const w = new WarcWriter({ dir, prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: { software: 'lifeboat-test' }, onFileClosed: (c) => void closed.push(c), ...extra });
  return { w, dir, closed };
}

async function records(path: string): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  for await (const item of readWarc(path)) {
    if (item.kind === 'defect') throw new Error(`defect: ${item.what}`);
    out.push(item);
  }
  return out;
}

async function members(path: string): Promise<{ offset: number; length: number }[]> {
  const out: { offset: number; length: number }[] = [];
  for await (const m of scanMembers(path)) out.push({ offset: m.offset, length: m.length });
  return out;
}

/** The FileHandle prototype's sync, replaced until `restore()`. */
async function patchSync(replacement: (original: () => Promise<void>, self: unknown) => Promise<void>): Promise<() => void> {
  const probe = await open(join(tmp, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const sync = proto.sync;
  proto.sync = function (this: unknown): Promise<void> {
    return replacement(() => sync.call(this), this);
  };
  return () => {
    proto.sync = sync;
  };
}

const eio = (): Error => Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });

async function withSmallDisk(ctx: { skip: () => void }, fn: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = join(tmp, `small-disk-${n++}`);
  await mkdir(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
  } catch (err) {
    if (process.env.LIFEBOAT_REQUIRE_ALL === '1') throw err;
    ctx.skip();
  }
  try {
    await fn(mnt);
  } finally {
    execFileSync('umount', ['-l', mnt]);
  }
}

describe('WarcWriter failures', () => {
  it('a file it cannot create fails the write with E_WARC_OPEN, naming the file', async () => {
    const { w, dir } = writer({ maxFileBytes: 1 });
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    // The first file is closed (rotated); the directory goes away before the next one.
    await rm(dir, { recursive: true });
    const err = await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two')).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_WARC_OPEN', message: expect.stringMatching(new RegExp(`^cannot create ${dir}/demo-\\d{14}-00001-t\\.warc\\.gz\\.open: ENOENT`)) });
    await w.abandon();
  });

  it('a body it cannot read fails the write with E_WARC_WRITE, cuts the file back to its last good record and stays failed', async () => {
    const { w, dir } = writer({ inMemoryLimitBytes: 4096 });
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    await w.flush();
    const [open1] = await readdir(dir);
    const good = (await stat(join(dir, open1!))).size;
    const spool = join(tmp, 'spooled-body');
    await writeFile(spool, randomBytes(20_000));
    const big = { ...httpCapture('http://127.0.0.1:8080/p/big', Buffer.alloc(20_000)), body: { kind: 'file' as const, path: spool, length: 20_000 } };
    await rm(spool); // the spool file is gone when its turn to be streamed comes
    const err = await w.writeCapture(big).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_WARC_WRITE', message: expect.stringMatching(new RegExp(`^writing response\\+request to ${join(dir, open1!)} failed: ENOENT`)) });
    expect((await stat(join(dir, open1!))).size, 'cut back to the last good record').toBe(good);
    await expect(w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two'))).rejects.toBe(err);
    await expect(w.flush()).rejects.toBe(err);
    await w.abandon();
    expect((await records(join(dir, open1!))).map((r) => r.type)).toEqual(['warcinfo', 'response', 'request']);
  });

  it('a full disk says so (E_DISK_FULL, what to do), for records and for copied members', async (ctx) => {
    await withSmallDisk(ctx, async (mnt) => {
      const a = new WarcWriter({ dir: join(mnt, 'a'), prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: {}, gzipLevel: 0 });
      const err = await a.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', randomBytes(512 * 1024))).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'E_DISK_FULL', message: expect.stringMatching(/^writing response\+request to .* failed: disk full: free space and run the same command again to resume$/) });
      await a.abandon();
      await rm(join(mnt, 'a'), { recursive: true });
      const b = new WarcWriter({ dir: join(mnt, 'b'), prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: {} });
      const copy = await b.writeMembers([{ data: randomBytes(512 * 1024), recordId: '<urn:uuid:x>', type: 'response' }]).catch((e: unknown) => e);
      expect(copy).toMatchObject({ code: 'E_DISK_FULL', message: expect.stringMatching(/^copying records to .* failed: ENOSPC/) });
      await b.abandon();
    });
  });

  it('a copy whose source is short fails with E_WARC_WRITE and leaves the file as it was', async () => {
    const { w, dir } = writer();
    await w.writeRecord({ type: 'metadata', url: 'http://127.0.0.1:8080/p/1', contentType: 'text/plain', data: Buffer.from('m') });
    await w.flush();
    const [name] = await readdir(dir);
    const before = await readFile(join(dir, name!));
    const small = join(tmp, 'short-source.bin');
    await writeFile(small, Buffer.alloc(10));
    const err = await w.writeMembers([
      { data: Buffer.alloc(100, 1), recordId: 'a', type: 'response' },
      { data: { path: small, offset: 5, length: 100 }, recordId: 'b', type: 'response' },
    ]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_WARC_WRITE', message: expect.stringMatching(/^copying records to .* failed: .*ended before offset 105/) });
    expect((await readFile(join(dir, name!))).equals(before)).toBe(true);
    await w.abandon();
  });

  it('a failed fsync when a full file is closed: the write fails with E_WARC_SYNC, the file stays .open (for repair) and is not reported closed', async () => {
    const { w, dir, closed } = writer({ maxFileBytes: 1 });
    const restore = await patchSync(async () => {
      throw eio();
    });
    let err: unknown;
    try {
      err = await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one')).catch((e: unknown) => e);
    } finally {
      restore();
    }
    expect(err).toMatchObject({ code: 'E_WARC_SYNC', message: expect.stringMatching(/^fsync of .*\.warc\.gz\.open failed: EIO/) });
    expect(closed).toEqual([]);
    expect((await readdir(dir)).every((f) => f.endsWith('.warc.gz.open'))).toBe(true);
    await expect(w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two'))).rejects.toBe(err);
    await expect(w.flush()).rejects.toBe(err);
    await w.abandon();
  });

  it('a failed fsync of the open file names it (E_WARC_SYNC)', async () => {
    const { w } = writer();
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    const restore = await patchSync(async () => {
      throw eio();
    });
    try {
      await expect(w.flush()).rejects.toMatchObject({ code: 'E_WARC_SYNC', message: expect.stringMatching(/^fsync of .*\.warc\.gz\.open failed: EIO/) });
    } finally {
      restore();
    }
    await w.abandon();
  });

  it('a flush whose file is rotated (closed) before its fsync starts still succeeds: the close fsynced that file', async () => {
    const { w, closed } = writer();
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    let release!: () => void;
    const late = new Promise<void>((r) => (release = r));
    let first = true;
    // The flush's fsync starts only after the file was closed (the handle is gone by then).
    const restore = await patchSync(async (original) => {
      if (!first) return original();
      first = false;
      await late;
      return original();
    });
    try {
      const flushed = w.flush();
      await w.close(); // fsyncs, closes and renames the file meanwhile
      release();
      await expect(flushed).resolves.toBeUndefined();
    } finally {
      restore();
    }
    expect(closed).toHaveLength(1);
  });

  it('a flush whose file was rotated by a close whose fsync failed fails too: those records are not durable', async () => {
    const { w } = writer();
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    let release!: () => void;
    const late = new Promise<void>((r) => (release = r));
    let call = 0;
    const restore = await patchSync(async (original) => {
      call++;
      if (call === 1) {
        await late; // the flush's fsync starts after the close
        return original();
      }
      throw eio(); // the close's fsync fails
    });
    try {
      const flushed = w.flush().catch((e: unknown) => e);
      await expect(w.close()).rejects.toMatchObject({ code: 'E_WARC_SYNC' });
      release();
      expect(await flushed).toMatchObject({ code: 'E_WARC_SYNC' });
    } finally {
      restore();
    }
  });

  it('a writer that has written nothing flushes at once, and one without an onFileClosed closes its file', async () => {
    const dir = join(tmp, `plain-${n++}`);
    const w = new WarcWriter({ dir, prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: {} });
    await w.flush();
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    await w.close();
    expect((await readdir(dir)).map((f) => /^demo-\d{14}-00000-t\.warc\.gz$/.test(f))).toEqual([true]);
  });
});

describe('WarcWriter record placement', () => {
  it('a record streamed beside small ones: each reported offset and length is its gzip member in the file', async () => {
    const { w, dir } = writer({ inMemoryLimitBytes: 4096 });
    const small = await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    // A compressible type: the body is deflated as it streams (an octet-stream one would be stored, from memory).
    const big = await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/big', randomBytes(50_000), { contentType: 'text/plain' }));
    const after = await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two'));
    const written = w.bytesWritten;
    await w.close();
    const [name] = await readdir(dir);
    const found = await members(join(dir, name!));
    const reported = [small, big, after].flatMap((c) => [c.response, c.request]).map((r) => ({ offset: r.offset, length: r.length }));
    expect(reported).toEqual(found.slice(1));
    expect(written).toBe((await stat(join(dir, name!))).size);
  });

  it('a small compressible record is compressed (its member is smaller than the record)', async () => {
    const { w, dir } = writer();
    const body = Buffer.alloc(20_000, 'lifeboat ');
    const r = await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', body, { contentType: 'text/plain' }));
    await w.close();
    expect(r.response.length).toBeLessThan(body.length / 10);
    const [name] = await readdir(dir);
    expect((await records(join(dir, name!))).map((x) => x.type)).toEqual(['warcinfo', 'response', 'request']);
  });

  it('copied members: buffers around a range, and ranges of two files that meet at the same offset, each byte for byte where reported', async () => {
    const a = join(tmp, 'copy-a.bin');
    const b = join(tmp, 'copy-b.bin');
    const aBytes = randomBytes(4000);
    const bBytes = randomBytes(4000);
    await writeFile(a, aBytes);
    await writeFile(b, bBytes);
    const { w, dir } = writer();
    const input = [
      { data: Buffer.alloc(300, 1), recordId: '1', type: 'response' },
      { data: Buffer.alloc(200, 2), recordId: '2', type: 'response' },
      { data: { path: a, offset: 1000, length: 1000 }, recordId: '3', type: 'response' },
      // Starts where the last range ended, but in another file: not one run.
      { data: { path: b, offset: 2000, length: 500 }, recordId: '4', type: 'response' },
      { data: Buffer.alloc(100, 3), recordId: '5', type: 'response' },
      { data: Buffer.alloc(50, 4), recordId: '6', type: 'response' },
    ];
    const written = await w.writeMembers(input);
    await w.close();
    const [name] = await readdir(dir);
    const out = await readFile(join(dir, name!));
    const expected = [Buffer.alloc(300, 1), Buffer.alloc(200, 2), aBytes.subarray(1000, 2000), bBytes.subarray(2000, 2500), Buffer.alloc(100, 3), Buffer.alloc(50, 4)];
    expect(written.map((x) => x.recordId)).toEqual(['1', '2', '3', '4', '5', '6']);
    for (const [i, wr] of written.entries()) expect(out.subarray(wr.offset, wr.offset + wr.length).equals(expected[i]!), `member ${i + 1}`).toBe(true);
    expect(written.at(-1)!.offset + written.at(-1)!.length).toBe(out.length);
  });

  it('a copied range longer than the 8 MiB read chunk, from the middle of its file, lands byte for byte', async () => {
    const src = join(tmp, 'copy-big.bin');
    const bytes = randomBytes(10 * 1024 * 1024);
    await writeFile(src, bytes);
    const { w, dir } = writer();
    const from = 512 * 1024;
    const length = 9 * 1024 * 1024;
    const [wr] = await w.writeMembers([{ data: { path: src, offset: from, length }, recordId: 'big', type: 'response' }]);
    await w.close();
    const [name] = await readdir(dir);
    const out = await readFile(join(dir, name!));
    expect(out.length).toBe(wr!.offset + length);
    expect(out.subarray(wr!.offset).equals(bytes.subarray(from, from + length))).toBe(true);
  });
});
