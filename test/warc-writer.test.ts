import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { WARCParser } from 'warcio';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureRecords, recordBytes, recordHeadOf, warcinfoRecord } from '../storage/warc/warc-build.js';
import { readWarc, type ReadRecord } from '../storage/warc/warc-reader.js';
import { WarcWriter, type ClosedWarc, type WrittenRecord } from '../storage/warc/warc-writer.js';
import { httpCapture } from './fixtures/http-capture.js';

// The WARC writer alone (no crawl): record building is pure and checked field by field; the
// rolling file is checked against a golden WARC byte for byte (fixed clock and record IDs),
// against the offsets it reported, and by a third-party parser (warcio).

const GOLDEN = new URL('./fixtures/golden/writer.warc', import.meta.url);
const AT = new Date('2024-05-01T12:00:00Z');

let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-writer-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function counterIds(): () => string {
  let n = 0;
  return () => `<urn:uuid:00000000-0000-4000-8000-${String(++n).padStart(12, '0')}>`;
}

const PNG = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(64, 7)]);

/** A capture, an already-compressed image, a revisit of the first, a screenshot resource. */
async function writeGoldenSet(dir: string, o: { maxFileBytes?: number; serialStep?: { offset: number; step: number }; closed?: ClosedWarc[] } = {}) {
  const writer = new WarcWriter({
    dir,
    prefix: 'demo',
    node: 't',
    maxFileBytes: o.maxFileBytes ?? 1 << 30,
    warcinfo: { software: 'lifeboat-test', hostname: 't', operator: undefined },
    now: () => AT,
    newRecordId: counterIds(),
    ...(o.serialStep ? { serialStep: o.serialStep } : {}),
    onFileClosed: (w) => void o.closed?.push(w),
  });
  const post = httpCapture('http://127.0.0.1:8080/api/v1/posts/1', '{"id":1,"text":"hello"}', { contentType: 'application/json', at: AT });
  const written: WrittenRecord[] = [];
  const first = await writer.writeCapture(post);
  written.push(first.response, first.request);
  const image = await writer.writeCapture(httpCapture('http://127.0.0.1:8080/media/1.png', PNG, { contentType: 'image/png', at: AT }));
  written.push(image.response, image.request);
  const again = await writer.writeCapture(post, { revisitOf: { recordId: first.response.recordId, url: post.url, date: AT.toISOString() } });
  written.push(again.response, again.request);
  written.push(await writer.writeRecord({ type: 'resource', url: 'urn:screenshot:http://127.0.0.1:8080/p/1', contentType: 'image/png', data: PNG }));
  await writer.close();
  return written;
}

describe('record building (pure)', () => {
  it('a capture becomes a response and a request linked by WARC-Concurrent-To, digests and length in the head', () => {
    const c = httpCapture('http://127.0.0.1:8080/p/1', 'abc', { contentType: 'text/html', at: AT });
    const [response, request] = captureRecords(c, { response: '<urn:uuid:r>', request: '<urn:uuid:q>' });
    expect(response.type).toBe('response');
    expect(response.stored).toBe(false);
    const head = recordHeadOf(response).toString();
    expect(head).toContain('WARC-Type: response\r\nWARC-Record-ID: <urn:uuid:r>\r\nWARC-Date: 2024-05-01T12:00:00.000Z\r\nWARC-Target-URI: http://127.0.0.1:8080/p/1\r\n');
    expect(head).toContain(`WARC-Payload-Digest: ${c.payloadDigest}\r\n`);
    expect(head.endsWith(`WARC-Block-Digest: ${c.blockDigest}\r\nContent-Length: ${c.responseHead.length + 3}\r\n\r\n`)).toBe(true);
    const req = recordBytes(request).toString();
    expect(req).toContain('WARC-Concurrent-To: <urn:uuid:r>\r\n');
    expect(req.endsWith(`${c.requestHead.toString()}\r\n\r\n`)).toBe(true);
  });

  it('a revisit holds the response head only, refers to its original and is marked truncated', () => {
    const c = httpCapture('http://127.0.0.1:8080/p/1', 'abc', { at: AT });
    const [revisit] = captureRecords(c, { response: '<urn:uuid:r2>', request: '<urn:uuid:q2>' }, { recordId: '<urn:uuid:r>', url: c.url, date: '2024-04-01T00:00:00.000Z' });
    expect(revisit.type).toBe('revisit');
    expect(revisit.block).toEqual([c.responseHead]);
    const text = recordBytes(revisit).toString();
    expect(text).toContain('WARC-Refers-To: <urn:uuid:r>\r\nWARC-Refers-To-Target-URI: http://127.0.0.1:8080/p/1\r\nWARC-Refers-To-Date: 2024-04-01T00:00:00.000Z\r\n');
    expect(text).toContain('WARC-Truncated: length\r\n');
    expect(text).not.toContain('abc');
  });

  it('already-compressed bodies are marked for stored gzip blocks; warcinfo names its file', () => {
    const [png] = captureRecords(httpCapture('http://127.0.0.1:8080/m.png', PNG, { contentType: 'image/png' }), { response: '<a>', request: '<b>' });
    expect(png.stored).toBe(true);
    const info = recordBytes(warcinfoRecord({ recordId: '<i>', date: AT, filename: 'x.warc.gz', fields: { software: 's', operator: undefined } })).toString();
    expect(info).toContain('WARC-Filename: x.warc.gz\r\n');
    expect(info).toContain('software: s\r\nformat: WARC File Format 1.1\r\n');
    expect(info).not.toContain('operator');
  });
});

describe('the rolling WARC file', () => {
  it('writes the golden WARC byte for byte, one gzip member per record, at the offsets it reported', async () => {
    const written = await writeGoldenSet(tmp);
    const files = await readdir(tmp);
    expect(files).toEqual(['demo-20240501120000-00000-t.warc.gz']);
    const path = join(tmp, files[0]!);
    const gz = await readFile(path);
    const plain = zlib.gunzipSync(gz);
    if (process.env.LIFEBOAT_WRITE_GOLDEN) await writeFile(GOLDEN, plain);
    expect(plain.equals(await readFile(GOLDEN)), 'the WARC differs from test/fixtures/golden/writer.warc').toBe(true);

    // Every record its own member, where the writer said it put it.
    const records: ReadRecord[] = [];
    for await (const item of readWarc(path)) if (item.kind === 'record') records.push(item);
    expect(records.map((r) => r.type)).toEqual(['warcinfo', 'response', 'request', 'response', 'request', 'revisit', 'request', 'resource']);
    expect(records.slice(1).map((r) => [r.offset, r.length])).toEqual(written.map((w) => [w.offset, w.length]));
    for (const w of written) expect(zlib.gunzipSync(gz.subarray(w.offset, w.offset + w.length)).subarray(0, 9).toString()).toBe('WARC/1.1\r');
    // The PNG went in as stored deflate blocks: its bytes are in the file as they are.
    const pngMember = gz.subarray(written[2]!.offset, written[2]!.offset + written[2]!.length);
    expect(pngMember.includes(PNG)).toBe(true);

    // A third-party parser reads the same records.
    const parser = new WARCParser([gz]);
    const theirs: [string, number, number][] = [];
    for await (const r of parser) {
      await r.readFully();
      theirs.push([r.warcType ?? '', parser.offset, parser.recordLength]);
    }
    expect(theirs).toEqual(records.map((r) => [r.type, r.offset, r.length]));
  });

  it('a mid-size stored body goes in by reference (writev of views): valid member, digests, offsets and the file sha256 hold', async () => {
    const closed: ClosedWarc[] = [];
    const writer = new WarcWriter({ dir: tmp, prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: {}, onFileClosed: (w) => void closed.push(w) });
    // Between the 64 KiB parts threshold and the 1 MiB in-memory limit, ending off a block bound.
    const video = Buffer.concat([Buffer.from('000000186674797069736f6d', 'hex'), createHash('sha512').update('x').digest(), Buffer.alloc(700_001, 9)]);
    const small = httpCapture('http://127.0.0.1:8080/api/v1/posts/2', '{"id":2}', { contentType: 'application/json' });
    const big = httpCapture('http://127.0.0.1:8080/media/video/2.mp4', video, { contentType: 'video/mp4' });
    const [a, b] = await Promise.all([writer.writeCapture(small), writer.writeCapture(big)]);
    await writer.close();
    const path = join(tmp, closed[0]!.name);
    const gz = await readFile(path);
    expect(closed[0]!.size).toBe(gz.length);
    expect(closed[0]!.sha256).toBe(createHash('sha256').update(gz).digest('hex'));
    const member = zlib.gunzipSync(gz.subarray(b.response.offset, b.response.offset + b.response.length));
    expect(member.includes(video)).toBe(true);
    expect(b.request.offset).toBe(b.response.offset + b.response.length);
    const records: ReadRecord[] = [];
    for await (const item of readWarc(path)) if (item.kind === 'record') records.push(item);
    // The two captures may land in either order; each where the writer said.
    const reported = [a.response, a.request, b.response, b.request].map((w) => [w.offset, w.length]).sort((x, y) => x[0]! - y[0]!);
    expect(records.slice(1).map((r) => [r.offset, r.length])).toEqual(reported);
    const parser = new WARCParser([gz]);
    for await (const r of parser) {
      if (r.warcType !== 'response' || r.warcTargetURI !== big.url) continue;
      expect(r.warcHeader('WARC-Payload-Digest')).toBe(big.payloadDigest);
      expect(Buffer.from(await r.readFully(false)).equals(video)).toBe(true);
    }
  });

  it('rotates by size: files closed in serial order of its step, each with its sha256 and record count, no .open left', async () => {
    const closed: ClosedWarc[] = [];
    await writeGoldenSet(tmp, { maxFileBytes: 1, serialStep: { offset: 1, step: 2 }, closed });
    const files = (await readdir(tmp)).sort();
    expect(files).toEqual(['00001', '00003', '00005', '00007'].map((s) => `demo-20240501120000-${s}-t.warc.gz`));
    expect(closed.map((w) => w.name)).toEqual(files);
    expect(closed.map((w) => w.records)).toEqual([3, 3, 3, 2]);
    for (const w of closed) {
      const bytes = await readFile(join(tmp, w.name));
      expect(w.size).toBe(bytes.length);
      expect(w.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
  });

  it('a second writer on the directory continues after the files already there', async () => {
    await writeGoldenSet(tmp);
    await writeGoldenSet(tmp);
    expect((await readdir(tmp)).sort()).toEqual(['demo-20240501120000-00000-t.warc.gz', 'demo-20240501120000-00001-t.warc.gz']);
  });
});
