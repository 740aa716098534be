import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanMembers } from '../storage/warc/gzip-members.js';
import { sha1Of } from '../storage/warc/warc-record.js';
import { readWarc, type ReadRecord } from '../storage/warc/warc-reader.js';
import { WarcWriter, type ClosedWarc, type WarcWriterOptions } from '../storage/warc/warc-writer.js';
import { httpCapture } from './fixtures/http-capture.js';

// The writer's other paths, found unguarded by the mutation run (TESTING.md): records too big to
// compress in memory (streamed, compressed or stored), members copied from another file, serial
// numbers after the files already there, the byte and record counters, and a closed writer.

let tmp: string;
let n = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-writer-paths-'));
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

async function records(dir: string): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  for (const f of (await readdir(dir)).sort()) {
    for await (const item of readWarc(join(dir, f))) {
      if (item.kind === 'defect') throw new Error(`defect: ${item.what}`);
      out.push(item);
    }
  }
  return out;
}

describe('WarcWriter paths', () => {
  it.each([6, 0])('streams a body over the in-memory limit (gzip level %i) into one readable member', async (gzipLevel) => {
    const { w, dir, closed } = writer({ inMemoryLimitBytes: 4096, gzipLevel });
    const body = Buffer.alloc(300_000, 'lifeboat ');
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/big', body, { contentType: 'text/plain' }));
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'small'));
    await w.close();
    const recs = await records(dir);
    expect(recs.map((r) => r.type)).toEqual(['warcinfo', 'response', 'request', 'response', 'request']);
    expect(recs[1]!.payloadSha1).toBe(sha1Of(body));
    expect(recs[3]!.payloadSha1).toBe(sha1Of(Buffer.from('small')));
    const [file] = await readdir(dir);
    const members: { length: number }[] = [];
    for await (const m of scanMembers(join(dir, file!))) members.push(m);
    expect(members).toHaveLength(5);
    // Level 0 stores (a member a little larger than the record); level 6 compresses this repetitive body.
    if (gzipLevel === 0) expect(members[1]!.length).toBeGreaterThan(body.length);
    else expect(members[1]!.length).toBeLessThan(body.length / 20);
    const small = members[3]!.length;
    if (gzipLevel === 0) expect(small).toBeGreaterThan(recs[3]!.length - 1);
    expect(closed).toEqual([{ name: file, size: (await stat(join(dir, file!))).size, sha256: createHash('sha256').update(await readFile(join(dir, file!))).digest('hex'), records: 5 }]);
  });

  it('copies members from buffers and from ranges of another file, byte for byte, and counts them', async () => {
    const source = writer();
    await source.w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    await source.w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two'));
    await source.w.close();
    const [srcName] = await readdir(source.dir);
    const srcPath = join(source.dir, srcName!);
    const src = await readFile(srcPath);
    const members: { offset: number; length: number }[] = [];
    for await (const m of scanMembers(srcPath)) members.push(m);
    const { w, dir, closed } = writer();
    const written = await w.writeMembers([
      { data: src.subarray(members[1]!.offset, members[1]!.offset + members[1]!.length), recordId: 'a', type: 'response' },
      { data: { path: srcPath, offset: members[2]!.offset, length: members[2]!.length }, recordId: 'b', type: 'request' },
      { data: { path: srcPath, offset: members[3]!.offset, length: members[3]!.length }, recordId: 'c', type: 'response' },
    ]);
    expect(w.recordsWritten).toBe(4); // its own warcinfo and the three
    await w.close();
    const [name] = await readdir(dir);
    const out = await readFile(join(dir, name!));
    for (const [i, wr] of written.entries()) {
      const m = members[i + 1]!;
      expect(wr).toMatchObject({ file: name, length: m.length });
      expect(out.subarray(wr.offset, wr.offset + wr.length).equals(src.subarray(m.offset, m.offset + m.length))).toBe(true);
    }
    expect(written[1]!.offset).toBe(written[0]!.offset + written[0]!.length);
    expect(w.bytesWritten).toBe(out.length);
    expect(closed[0]).toMatchObject({ size: out.length, records: 4 });
  });

  it('refuses a copy range beyond the end of its file', async () => {
    const { w } = writer();
    const small = join(tmp, 'small.bin');
    await writeFile(small, Buffer.alloc(10));
    await expect(w.writeMembers([{ data: { path: small, offset: 5, length: 100 }, recordId: 'x', type: 'response' }])).rejects.toThrow(/ended before offset 105/);
    await w.abandon();
  });

  it('numbers files after those already in the directory, each writer on its own residue', async () => {
    const dir = join(tmp, 'serials');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'demo-20240101000000-00007-x.warc.gz'), '');
    await writeFile(join(dir, 'demo-20240101000000-00005-x.warc.gz.open'), '');
    await writeFile(join(dir, 'notes-00042.txt'), '');
    const names: string[] = [];
    for (const serialStep of [undefined, { offset: 0, step: 3 }, { offset: 2, step: 3 }]) {
      const w = new WarcWriter({ dir, prefix: 'demo', node: 't', maxFileBytes: 1, warcinfo: {}, ...(serialStep ? { serialStep } : {}), onFileClosed: (c) => void names.push(c.name) });
      await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
      await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two'));
      await w.close();
    }
    expect(names.map((x) => /-(\d{5})-t\.warc\.gz$/.exec(x)![1])).toEqual(['00008', '00009', '00012', '00015', '00017', '00020']);
  });

  it('a closed writer refuses more records; closing twice is harmless; abandon leaves the .open file', async () => {
    const { w, dir } = writer();
    await w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    await w.close();
    await w.close();
    await expect(w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two'))).rejects.toThrow('the WARC writer is closed');
    expect((await readdir(dir)).every((f) => f.endsWith('.warc.gz'))).toBe(true);
    const other = writer();
    await other.w.writeCapture(httpCapture('http://127.0.0.1:8080/p/1', 'one'));
    await other.w.flush();
    await other.w.abandon();
    expect((await readdir(other.dir)).map((f) => f.endsWith('.warc.gz.open'))).toEqual([true]);
    await expect(other.w.writeCapture(httpCapture('http://127.0.0.1:8080/p/2', 'two'))).rejects.toThrow('the WARC writer is closed');
    expect(other.closed).toEqual([]);
  });
});
