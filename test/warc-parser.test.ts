import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { RawRecordSink, WarcDefect, WarcItem, WarcRecordInfo } from '../storage/warc/warc-item.js';
import { WarcParser, type WarcParserOptions } from '../storage/warc/warc-parser.js';
import { recordHead, sha1Of } from '../storage/warc/warc-record.js';

/**
 * The push parser on its own, fed bytes directly (warc-reader.test.ts covers it behind files,
 * gzip members and resynchronisation). Every case is also fed one byte at a time: a head, an
 * HTTP head or the closing CRLF CRLF split across writes must parse the same.
 */

const END = Buffer.from('\r\n\r\n');

function record(type: string, block: Buffer, extra: [string, string][] = []): Buffer {
  const head = recordHead([
    ['WARC-Type', type],
    ['WARC-Record-ID', `<urn:uuid:${type}-${block.length}>`],
    ['WARC-Date', '2024-05-01T12:00:00Z'],
    ...extra,
    ['Content-Length', block.length],
  ]);
  return Buffer.concat([head, block, END]);
}

const httpResponse = (body: string, headers = 'Content-Type: text/plain'): Buffer => Buffer.from(`HTTP/1.1 200 OK\r\n${headers}\r\n\r\n${body}`);

async function parse(bytes: Buffer, opts: Partial<WarcParserOptions> & { chunk?: number; streamSize?: number } = {}): Promise<{ items: WarcItem[]; parser: WarcParser }> {
  const parser = new WarcParser({ file: 'f.warc', ...opts });
  if (opts.streamSize !== undefined) parser.streamSize = opts.streamSize;
  const items: WarcItem[] = [];
  const step = opts.chunk ?? bytes.length;
  for (let pos = 0; pos < bytes.length; pos += step) {
    await parser.write(bytes.subarray(pos, pos + step), pos);
    items.push(...parser.take());
    if (parser.resyncFrom !== undefined) break;
  }
  if (parser.resyncFrom === undefined) await parser.end(bytes.length);
  items.push(...parser.take());
  return { items, parser };
}

/** Parses whole and byte by byte; both must give the same items. */
async function parseBoth(bytes: Buffer, opts: Partial<WarcParserOptions> & { streamSize?: number } = {}): Promise<WarcItem[]> {
  const whole = await parse(bytes, opts);
  const bytewise = await parse(bytes, { ...opts, chunk: 1 });
  expect(bytewise.items).toEqual(whole.items);
  return whole.items;
}

const records = (items: WarcItem[]): WarcRecordInfo[] => items.filter((i): i is WarcRecordInfo => i.kind === 'record');
const defects = (items: WarcItem[]): WarcDefect[] => items.filter((i): i is WarcDefect => i.kind === 'defect');

describe('WarcParser', () => {
  it('reads records back to back: offsets, lengths, header fields in order, digests checked', async () => {
    const body = 'hello archive';
    const http = httpResponse(body);
    const a = record('response', http, [
      ['WARC-Target-URI', '<http://example.test/a>'],
      ['WARC-Concurrent-To', '<urn:uuid:x>, <urn:uuid:y>'],
      ['WARC-Block-Digest', sha1Of(http)],
      ['WARC-Payload-Digest', sha1Of(Buffer.from(body))],
      ['Content-Type', 'application/http; msgtype=response'],
    ]);
    const b = record('resource', Buffer.from('plain bytes'), [['WARC-Target-URI', 'http://example.test/b'], ['WARC-Payload-Digest', sha1Of(Buffer.from('plain bytes'))]]);
    const items = await parseBoth(Buffer.concat([a, b]));
    const [ra, rb] = records(items);
    expect(defects(items)).toEqual([]);
    expect(ra).toMatchObject({
      type: 'response', offset: 0, length: a.length, exact: true, streamOffset: 0, streamLength: a.length,
      targetUri: 'http://example.test/a', concurrentTo: ['<urn:uuid:x>', '<urn:uuid:y>'], contentLength: http.length,
      blockDigestOk: true, payloadDigestOk: true, blockSha1: sha1Of(http), payloadSha1: sha1Of(Buffer.from(body)),
      httpStatus: 200, httpHeaders: [['Content-Type', 'text/plain']], problems: [],
    });
    expect([...ra!.headers.keys()]).toEqual(['WARC-Type', 'WARC-Record-ID', 'WARC-Date', 'WARC-Target-URI', 'WARC-Concurrent-To', 'WARC-Block-Digest', 'WARC-Payload-Digest', 'Content-Type', 'Content-Length']);
    expect(rb).toMatchObject({ type: 'resource', offset: a.length, length: b.length, targetUri: 'http://example.test/b', payloadDigestOk: true, blockDigestOk: undefined });
    expect(rb!.httpStatus).toBeUndefined();
  });

  it('reports digest mismatches on the record and still returns it', async () => {
    const http = httpResponse('the real body');
    const bytes = record('response', http, [['WARC-Block-Digest', sha1Of(Buffer.from('other'))], ['WARC-Payload-Digest', sha1Of(Buffer.from('other'))]]);
    const [r] = records(await parseBoth(bytes));
    expect(r!.blockDigestOk).toBe(false);
    expect(r!.payloadDigestOk).toBe(false);
    expect(r!.problems).toEqual([
      `block digest mismatch: declared ${sha1Of(Buffer.from('other'))}, computed ${sha1Of(http)}`,
      `payload digest mismatch: declared ${sha1Of(Buffer.from('other'))}, computed ${sha1Of(Buffer.from('the real body'))}`,
    ]);
  });

  it('accepts a payload digest of the de-chunked body of a chunked response, and a sha256 hex label', async () => {
    const body = 'hello chunked world';
    const chunked = `5\r\nhello\r\n${(body.length - 5).toString(16)}\r\n${body.slice(5)}\r\n0\r\n\r\n`;
    const http = httpResponse(chunked, 'Transfer-Encoding: chunked');
    const sha256 = `sha256:${createHash('sha256').update(http).digest('hex')}`;
    const [r] = records(await parseBoth(record('response', http, [['WARC-Block-Digest', sha256], ['WARC-Payload-Digest', sha1Of(Buffer.from(body))]])));
    expect(r).toMatchObject({ blockDigestOk: true, payloadDigestOk: true, problems: [] });
  });

  it('reads a request (method, no payload digest required) and a revisit without an HTTP body', async () => {
    const req = Buffer.from('GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n');
    const revisit = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n');
    const items = await parseBoth(Buffer.concat([record('request', req), record('revisit', revisit)]));
    const [rq, rv] = records(items);
    expect(rq).toMatchObject({ type: 'request', httpMethod: 'GET', httpHeaders: [['Host', 'example.test']], payloadDigestOk: undefined, problems: [] });
    expect(rv).toMatchObject({ type: 'revisit', httpStatus: 200, problems: [] });
  });

  it('says when an HTTP head never ends', async () => {
    const [r] = records(await parseBoth(record('response', Buffer.from('HTTP/1.1 200 OK\r\nX: y'))));
    expect(r!.problems).toEqual(['HTTP head not terminated by a blank line']);
    expect(r!.payloadDigestOk).toBeUndefined();
  });

  it('joins folded header lines and repeated fields', async () => {
    const head = Buffer.from('WARC/1.0\r\nWARC-Type: metadata\r\nX-Note: one\r\n  two\r\nX-Note: three\r\nContent-Length: 0\r\n\r\n');
    const [r] = records(await parseBoth(Buffer.concat([head, END])));
    expect(r!.headers.get('X-Note')).toBe('one two, three');
  });

  it('in a plain stream, a bad Content-Length or bad magic is a defect that asks to re-read from the next byte', async () => {
    const bad = Buffer.from('WARC/1.1\r\nWARC-Type: resource\r\nContent-Length: lots\r\n\r\nxx\r\n\r\n');
    const { items, parser } = await parse(bad);
    expect(defects(items)).toEqual([{ kind: 'defect', file: 'f.warc', offset: 0, what: 'bad Content-Length "lots"' }]);
    expect(parser.resyncFrom).toBe(1);
    const notWarc = await parse(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'));
    expect(defects(notWarc.items)[0]!.what).toBe('not a WARC record (bad magic "HTTP/1.1 200 OK")');
    // Not even a whole head yet: eight bytes that do not start "WARC/" are enough to say so.
    const unfinished = await parse(Buffer.from('GIF89a-not-a-warc'));
    expect(defects(unfinished.items)[0]!.what).toBe('not a WARC record (bad magic)');
    const noType = await parse(Buffer.from('WARC/1.1\r\nContent-Length: 0\r\n\r\n\r\n\r\n'));
    expect(defects(noType.items)[0]!.what).toBe('record has no WARC-Type');
  });

  it('knows a record cannot run past the end of the file, nor miss its closing CRLF CRLF', async () => {
    const r = record('resource', Buffer.from('0123456789'));
    const past = await parse(r, { streamSize: r.length - 5 });
    expect(defects(past.items)[0]!.what).toBe('Content-Length 10 runs past the end of the file (truncated record)');
    const noEnd = Buffer.concat([r.subarray(0, r.length - 4), Buffer.from('XXXX')]);
    expect(defects((await parse(noEnd)).items)[0]!.what).toBe('record at stream offset 0 is not followed by CRLF CRLF (wrong Content-Length?)');
  });

  it('reports a record cut short by the end of input, keeping those before it', async () => {
    const a = record('resource', Buffer.from('first'));
    const b = record('resource', Buffer.from('second, cut'));
    const items = await parseBoth(Buffer.concat([a, b.subarray(0, b.length - 8)]));
    expect(records(items).map((r) => r.offset)).toEqual([0]);
    expect(defects(items)).toEqual([{ kind: 'defect', file: 'f.warc', offset: a.length, what: 'truncated record at end of file' }]);
  });

  it('stops buffering a record head at maxHeadBytes (a head that arrives whole is read whatever its size)', async () => {
    const big = record('resource', Buffer.from('x'), [['X-Padding', 'p'.repeat(300)]]);
    expect(defects((await parse(big, { maxHeadBytes: 200, chunk: 64 })).items)[0]!.what).toBe('record header block larger than 200 bytes');
    expect(defects((await parse(big, { maxHeadBytes: 200 })).items)).toEqual([]);
  });

  it('with gzip members: a record alone in its member is exact and located by the member; two in one member are not', async () => {
    const a = record('resource', Buffer.from('alone'));
    const b = record('resource', Buffer.from('shared 1'));
    const c = record('resource', Buffer.from('shared 2'));
    const parser = new WarcParser({ file: 'f.warc.gz' });
    parser.beginMember(0, 0);
    await parser.write(a, 0);
    await parser.endMember(40, a.length);
    parser.beginMember(40, a.length);
    await parser.write(Buffer.concat([b, c]), a.length);
    await parser.endMember(70, a.length + b.length + c.length);
    await parser.end(a.length + b.length + c.length);
    const items = parser.take();
    expect(records(items).map((r) => [r.offset, r.length, r.exact, r.streamOffset])).toEqual([
      [0, 40, true, 0],
      [40, 0, false, a.length],
      [40, 0, false, a.length + b.length],
    ]);
  });

  it('with gzip members: a record that runs past its member is a defect at the member', async () => {
    const a = record('resource', Buffer.from('spans two members'));
    const parser = new WarcParser({ file: 'f.warc.gz' });
    parser.beginMember(0, 0);
    await parser.write(a.subarray(0, 30), 0);
    await parser.endMember(25, 30);
    parser.beginMember(25, 30);
    await parser.write(a.subarray(30), 30);
    await parser.endMember(20, a.length);
    const items = parser.take();
    expect(items[0]).toEqual({ kind: 'defect', file: 'f.warc.gz', offset: 0, what: 'record runs past the end of its gzip member (truncated record or wrong Content-Length)' });
    // The next member starts inside the record: not a record either, reported at that member.
    expect(items.slice(1)).toEqual([{ kind: 'defect', file: 'f.warc.gz', offset: 25, what: `not a WARC record (bad magic "${a.subarray(30).toString('latin1').replace(/^[\r\n]+/, '').slice(0, 20)}")` }]);
  });

  it('hands a raw sink the exact bytes of each record, and aborts it for a damaged one', async () => {
    const a = record('resource', Buffer.from('sunk'));
    const got: { start: number; bytes: Buffer[]; ended?: string; aborted?: boolean }[] = [];
    const rawSink = (start: number): RawRecordSink => {
      const s: (typeof got)[number] = { start, bytes: [] };
      got.push(s);
      return {
        write: (c) => void s.bytes.push(Buffer.from(c)),
        end: (r) => void (s.ended = r.recordId),
        abort: () => void (s.aborted = true),
      };
    };
    const torn = record('resource', Buffer.from('torn'.repeat(50)));
    const broken = torn.subarray(0, torn.length - 20);
    await parse(Buffer.concat([a, broken]), { rawSink, chunk: 7 });
    expect(got.map((s) => s.start)).toEqual([0, a.length]);
    expect(Buffer.concat(got[0]!.bytes).equals(a)).toBe(true);
    expect(got[0]!.ended).toBe('<urn:uuid:resource-4>');
    expect(got[1]!.aborted).toBe(true);
  });
});
