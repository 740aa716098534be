import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { WARCParser, WARCRecord, WARCSerializer } from 'warcio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base32 } from '../storage/warc/capture.js';
import { detectWarcFormat, readWarc, type ReadItem, type ReadRecord } from '../storage/warc/warc-reader.js';
import { makeShard } from './fixtures/make-shard.js';

let tmp: string;
let shardWarc: string;

async function collect(path: string): Promise<{ records: ReadRecord[]; defects: Extract<ReadItem, { kind: 'defect' }>[] }> {
  const records: ReadRecord[] = [];
  const defects: Extract<ReadItem, { kind: 'defect' }>[] = [];
  for await (const item of readWarc(path)) {
    if (item.kind === 'record') records.push(item);
    else defects.push(item);
  }
  return { records, defects };
}

function record(fields: [string, string][], block: Buffer): Buffer {
  const head = `WARC/1.1\r\n${fields.map(([k, v]) => `${k}: ${v}\r\n`).join('')}Content-Length: ${block.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), block, Buffer.from('\r\n\r\n')]);
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-reader-'));
  await makeShard({ dir: join(tmp, 'shard'), start: 1, end: 30 });
  const names = await readdir(join(tmp, 'shard', 'warcs'));
  shardWarc = join(tmp, 'shard', 'warcs', names[0]!);
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('readWarc', () => {
  it('reads every record lifeboat writes, exact members, digests verified, offsets as warcio sees them', async () => {
    expect(await detectWarcFormat(shardWarc)).toBe('gzip-per-record');
    const { records, defects } = await collect(shardWarc);
    expect(defects).toEqual([]);
    expect(records[0]!.type).toBe('warcinfo');
    expect(records.every((r) => r.exact && r.blockDigestOk === true && r.problems.length === 0)).toBe(true);
    const responses = records.filter((r) => r.type === 'response');
    expect(responses.length).toBeGreaterThan(20);
    expect(responses.every((r) => r.payloadDigestOk === true && r.httpStatus !== undefined)).toBe(true);
    expect(records.some((r) => r.type === 'revisit')).toBe(true);
    // warcio.js agrees on every record's offset, length, type and ID.
    const parser = new WARCParser(createReadStream(shardWarc));
    const theirs: { offset: number; length: number; type: string; id: string }[] = [];
    for await (const rec of parser) {
      await rec.readFully();
      theirs.push({ offset: parser.offset, length: parser.recordLength, type: rec.warcType ?? '', id: rec.warcHeader('WARC-Record-ID') ?? '' });
    }
    expect(records.map((r) => ({ offset: r.offset, length: r.length, type: r.type, id: r.recordId }))).toEqual(theirs);
    // Each record's member can be copied as is.
    const file = await readFile(shardWarc);
    for (const r of records.slice(0, 10)) expect(r.member!.equals(file.subarray(r.offset, r.offset + r.length))).toBe(true);
  });

  it('reads what warcio.js writes (sha256 hex digests, and the base32 sha1 form)', async () => {
    const parts: Uint8Array[] = [];
    for (const algo of ['sha-256', 'sha-1'] as const) {
      const rec = WARCRecord.create(
        { url: 'http://example.test/a', type: 'response', httpHeaders: { 'Content-Type': 'text/plain' } },
        (async function* () {
          yield new TextEncoder().encode('some payload text');
        })(),
      );
      parts.push(await WARCSerializer.serialize(rec, { gzip: true, digest: algo === 'sha-1' ? { algo, prefix: 'sha1:', base32: true } : { algo, prefix: 'sha256:' } }));
    }
    const path = join(tmp, 'warcio.warc.gz');
    await writeFile(path, Buffer.concat(parts));
    const { records, defects } = await collect(path);
    expect(defects).toEqual([]);
    expect(records).toHaveLength(2);
    expect(records[0]!.blockDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(records.every((r) => r.blockDigestOk && r.payloadDigestOk && r.exact)).toBe(true);
  });

  it('reads plain and whole-file-gzip WARCs', async () => {
    const plain = zlib.gunzipSync(await readFile(shardWarc));
    const plainPath = join(tmp, 'plain.warc');
    await writeFile(plainPath, plain);
    const wholePath = join(tmp, 'whole.warc.gz');
    await writeFile(wholePath, zlib.gzipSync(plain));
    expect(await detectWarcFormat(plainPath)).toBe('plain');
    expect(await detectWarcFormat(wholePath)).toBe('gzip-whole');
    const base = await collect(shardWarc);
    for (const path of [plainPath, wholePath]) {
      const { records, defects } = await collect(path);
      expect(defects).toEqual([]);
      expect(records.map((r) => r.recordId)).toEqual(base.records.map((r) => r.recordId));
      expect(records.every((r) => r.blockDigestOk && r.payloadDigestOk !== false)).toBe(true);
    }
    const { records } = await collect(plainPath);
    for (const r of records) expect(plain.subarray(r.offset, r.offset + 5).toString()).toBe('WARC/');
    expect(records[records.length - 1]!.offset + records[records.length - 1]!.length).toBe(plain.length);
  });

  it('reports a flipped byte by file and member offset and reads on', async () => {
    const good = await collect(shardWarc);
    const data = Buffer.from(await readFile(shardWarc));
    const victim = good.records[10]!;
    data[victim.offset + Math.floor(victim.length / 2)]! ^= 0x40;
    const path = join(tmp, 'flipped.warc.gz');
    await writeFile(path, data);
    const { records, defects } = await collect(path);
    expect(defects).toHaveLength(1);
    expect(defects[0]).toMatchObject({ file: path, offset: victim.offset });
    expect(records.map((r) => r.recordId)).toEqual(good.records.filter((r) => r !== victim).map((r) => r.recordId));
  });

  it('reports a torn tail and keeps what came before', async () => {
    const good = await collect(shardWarc);
    const data = await readFile(shardWarc);
    const last = good.records[good.records.length - 1]!;
    const path = join(tmp, 'torn.warc.gz');
    await writeFile(path, data.subarray(0, last.offset + 20));
    const { records, defects } = await collect(path);
    expect(defects).toHaveLength(1);
    expect(defects[0]!.offset).toBe(last.offset);
    expect(defects[0]!.what).toMatch(/truncated/);
    expect(records).toHaveLength(good.records.length - 1);
  });

  it('reports garbage headers and bad Content-Length in a plain WARC and resynchronises', async () => {
    const ok = (n: number) => record([['WARC-Type', 'resource'], ['WARC-Record-ID', `<urn:uuid:${n}>`], ['WARC-Target-URI', `http://x.test/${n}`]], Buffer.from(`body ${n}`));
    const bad1 = Buffer.from('WARC/1.1\r\nWARC-Type: resource\r\nthis is not a header\r\nContent-Length: 3\r\n\r\nabc\r\n\r\n');
    const bad2 = Buffer.from('WARC/1.1\r\nWARC-Type: resource\r\nContent-Length: -5\r\n\r\nabc\r\n\r\n');
    const bad3 = Buffer.from('WARC/1.1\r\nWARC-Type: resource\r\nContent-Length: 99999999999\r\n\r\nabc\r\n\r\n');
    const bad4 = Buffer.from('WARC/1.1\r\nWARC-Type: resource\r\nContent-Length: 1\r\n\r\nabc\r\n\r\n');
    const parts = [ok(1), bad1, ok(2), bad2, ok(3), bad3, ok(4), bad4, ok(5), Buffer.from('random junk'), ok(6)];
    const path = join(tmp, 'garbage.warc');
    await writeFile(path, Buffer.concat(parts));
    const { records, defects } = await collect(path);
    expect(records.map((r) => r.recordId)).toEqual([1, 2, 3, 4, 5, 6].map((n) => `<urn:uuid:${n}>`));
    let at = 0;
    const offsets = parts.map((p) => ((at += p.length), at - p.length));
    expect(defects.map((d) => d.offset)).toEqual([offsets[1], offsets[3], offsets[5], offsets[7], offsets[9]]);
    expect(defects[1]!.what).toMatch(/Content-Length/);
  });

  it('hashes a large record without buffering it and checks a chunked payload de-chunked', async () => {
    const big = randomBytes(48 * 1024 * 1024);
    const sha1 = `sha1:${base32(createHash('sha1').update(big).digest())}`;
    const block = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n'), big]);
    const rec = record(
      [['WARC-Type', 'response'], ['WARC-Record-ID', '<urn:uuid:big>'], ['WARC-Target-URI', 'http://x.test/big'], ['Content-Type', 'application/http;msgtype=response'],
        ['WARC-Payload-Digest', sha1], ['WARC-Block-Digest', `sha256:${createHash('sha256').update(block).digest('hex')}`]],
      block,
    );
    const body = Buffer.from('hello chunked world');
    const chunked = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\ne\r\n chunked world\r\n0\r\n\r\n')]);
    const rec2 = record(
      [['WARC-Type', 'response'], ['WARC-Record-ID', '<urn:uuid:chunked>'], ['WARC-Target-URI', 'http://x.test/c'], ['Content-Type', 'application/http;msgtype=response'],
        ['WARC-Payload-Digest', `sha1:${createHash('sha1').update(body).digest('hex')}`]],
      chunked,
    );
    const path = join(tmp, 'big.warc.gz');
    await writeFile(path, Buffer.concat([zlib.gzipSync(rec, { level: 1 }), zlib.gzipSync(rec2)]));
    const before = process.memoryUsage().rss;
    let peak = before;
    const records: ReadRecord[] = [];
    for await (const item of readWarc(path)) {
      peak = Math.max(peak, process.memoryUsage().rss);
      if (item.kind === 'record') records.push(item);
    }
    expect(records).toHaveLength(2);
    expect(records[0]).toMatchObject({ exact: true, blockDigestOk: true, payloadDigestOk: true, payloadSha1: sha1 });
    expect(records[0]!.member).toBeUndefined();
    expect(records[1]).toMatchObject({ payloadDigestOk: true, httpStatus: 200 });
    expect(peak - before).toBeLessThan(40 * 1024 * 1024);
  });

  it('reports a file that is not a WARC', async () => {
    const path = join(tmp, 'not.warc.gz');
    await writeFile(path, 'hello, I am a text file\n');
    const { records, defects } = await collect(path);
    expect(records).toEqual([]);
    expect(defects).toHaveLength(1);
    expect(defects[0]!.offset).toBe(0);
    const empty = join(tmp, 'empty.warc.gz');
    await writeFile(empty, '');
    expect((await collect(empty)).defects[0]!.what).toMatch(/empty/);
  });
});
