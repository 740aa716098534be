import { Dechunker, DigestCheck } from './warc-digest.js';
import type { RawRecordSink, WarcItem, WarcRecordInfo } from './warc-item.js';

export interface WarcParserOptions {
  file: string;
  maxHeadBytes?: number;
  rawSink?: (streamOffset: number) => RawRecordSink | undefined;
  /** Believe declared sha1 digests instead of recomputing them (DigestCheck `trustSha1`). */
  trustSha1Digests?: boolean;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const HTTP_TYPES = new Set(['response', 'request', 'revisit']);

interface Current {
  start: number;
  memberOffset: number | undefined;
  startsAtMember: boolean;
  info: Omit<WarcRecordInfo, 'blockDigestOk' | 'blockSha1' | 'payloadDigestOk' | 'payloadSha1' | 'exact' | 'length' | 'streamLength'>;
  remaining: number;
  block: DigestCheck;
  payload: DigestCheck | undefined;
  httpHead: Buffer[] | undefined;
  httpHeadBytes: number;
  dechunk: { d: Dechunker; check: DigestCheck } | undefined;
  trailer: number;
  sink: RawRecordSink | undefined;
}

type Done = Omit<WarcRecordInfo, 'exact' | 'length' | 'offset'> & { memberOffset: number | undefined; startsAtMember: boolean; end: number };

function parseHeaderLines(text: string): [string, string][] | undefined {
  const out: [string, string][] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && out.length > 0) {
      out[out.length - 1]![1] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    out.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return out;
}

/**
 * A push parser for a stream of WARC records (the decompressed bytes of a `.warc.gz`, or a
 * plain `.warc`). Bytes go in with `write`; finished records and defects come out of `take()`.
 * Block bytes are hashed as they pass and never kept, so a 1 GB record costs a few hash states;
 * only the record head (capped, default 1 MiB) and the HTTP head (same cap) are buffered.
 * The source (warc-reader.ts) tells the parser where gzip members begin and end, so a record can
 * be located by the member that holds it.
 */
export class WarcParser {
  readonly #file: string;
  readonly #maxHead: number;
  readonly #rawSink: WarcParserOptions['rawSink'];
  readonly #trust: boolean;
  #state: 'head' | 'block' | 'trailer' | 'seek' | 'skip' = 'head';
  #head: Buffer[] = [];
  #headBytes = 0;
  #headStart = -1;
  #cur: Current | undefined;
  #done: Done | undefined;
  #out: WarcItem[] = [];
  #member: { offset: number; start: number; records: number } | undefined;
  /** Total stream size when known (plain files): a Content-Length beyond it is a defect at once. */
  streamSize = Number.POSITIVE_INFINITY;
  /** Set when a defect asks the source to re-read from an earlier position (plain files). */
  resyncFrom: number | undefined;
  /** In gzip-member mode a record must not run past its member. */
  recordsSpanMembers = false;

  constructor(options: WarcParserOptions) {
    this.#file = options.file;
    this.#maxHead = options.maxHeadBytes ?? 1024 * 1024;
    this.#rawSink = options.rawSink;
    this.#trust = options.trustSha1Digests ?? false;
  }

  /** Finished records and defects since the last call. */
  take(): WarcItem[] {
    const out = this.#out;
    this.#out = [];
    return out;
  }

  get seeking(): boolean {
    return this.#state === 'seek';
  }

  get idle(): boolean {
    return (this.#state === 'head' && this.#headBytes === 0) || this.#state === 'seek' || this.#state === 'skip';
  }

  beginMember(offset: number, streamPos: number): void {
    this.#member = { offset, start: streamPos, records: 0 };
    if (this.#state === 'skip') this.#state = 'head';
  }

  /** The member ended cleanly at `streamPos` with compressed length `length`. */
  async endMember(length: number, streamPos: number): Promise<void> {
    const m = this.#member!;
    if (this.#state !== 'head' || this.#headBytes > 0) {
      if (!this.recordsSpanMembers && this.#state !== 'seek' && this.#state !== 'skip') {
        await this.#defect(this.#cur?.start ?? this.#headStart, m.offset, 'record runs past the end of its gzip member (truncated record or wrong Content-Length)', 'skip');
        this.#state = 'head';
      }
    }
    const d = this.#done;
    if (d) {
      this.#done = undefined;
      const exact = d.startsAtMember && m.records === 1 && this.idle;
      this.#emit(d, m.offset, exact ? length : 0, exact);
    }
    void streamPos;
  }

  /** The member was corrupt: drop what it held. */
  async abortMember(): Promise<void> {
    this.#done = undefined;
    await this.#cur?.sink?.abort();
    this.#cur = undefined;
    this.#head = [];
    this.#headBytes = 0;
    this.#state = 'head';
  }

  #emit(d: Done, offset: number, length: number, exact: boolean): void {
    const { memberOffset: _m, startsAtMember: _s, end: _e, ...rest } = d;
    this.#out.push({ ...rest, offset, length, exact });
  }

  async #defect(streamPos: number, offset: number, what: string, next: 'seek' | 'skip'): Promise<void> {
    this.#out.push({ kind: 'defect', file: this.#file, offset, what });
    await this.#cur?.sink?.abort();
    this.#cur = undefined;
    this.#head = [];
    this.#headBytes = 0;
    this.#state = this.#member && !this.recordsSpanMembers ? 'skip' : next;
    if (!this.#member && next === 'seek') this.resyncFrom = streamPos + 1;
  }

  #where(pos: number): number {
    return this.#member ? this.#member.offset : pos;
  }

  /** Feeds bytes at stream position `pos`. */
  async write(chunk: Buffer, pos: number): Promise<void> {
    let i = 0;
    while (i < chunk.length) {
      if (this.resyncFrom !== undefined) return;
      switch (this.#state) {
        case 'skip':
          return;
        case 'seek': {
          // A header split across two chunks is found because plain sources re-read a few bytes of overlap while seeking.
          const at = chunk.indexOf('WARC/1.', i);
          if (at < 0) return;
          i = at;
          this.#state = 'head';
          break;
        }
        case 'head':
          i = await this.#feedHead(chunk, i, pos);
          break;
        case 'block':
          i = await this.#feedBlock(chunk, i);
          break;
        case 'trailer':
          i = await this.#feedTrailer(chunk, i, pos);
          break;
      }
    }
  }

  async #feedHead(chunk: Buffer, i: number, pos: number): Promise<number> {
    if (this.#headBytes === 0) {
      while (i < chunk.length && (chunk[i] === 13 || chunk[i] === 10)) i++;
      if (i === chunk.length) return i;
      this.#headStart = pos + i;
    }
    const prev = this.#headBytes;
    this.#head.push(chunk.subarray(i));
    this.#headBytes += chunk.length - i;
    const buf = this.#head.length === 1 ? this.#head[0]! : Buffer.concat(this.#head);
    this.#head = [buf];
    const end = buf.indexOf(CRLFCRLF, Math.max(0, prev - 3));
    if (end < 0) {
      if (this.#headBytes > this.#maxHead) {
        await this.#defect(this.#headStart, this.#where(this.#headStart), `record header block larger than ${this.#maxHead} bytes`, 'seek');
      } else if (this.#headBytes >= 8 && !buf.subarray(0, 5).equals(Buffer.from('WARC/'))) {
        await this.#defect(this.#headStart, this.#where(this.#headStart), 'not a WARC record (bad magic)', 'seek');
      }
      return chunk.length;
    }
    const headLen = end + 4;
    const used = headLen - prev;
    const head = buf.subarray(0, headLen);
    this.#head = [];
    this.#headBytes = 0;
    await this.#startRecord(head, this.#headStart);
    return i + used;
  }

  async #startRecord(head: Buffer, start: number): Promise<void> {
    const text = head.toString('latin1');
    const nl = text.indexOf('\r\n');
    const version = text.slice(0, nl);
    const where = this.#where(start);
    if (!/^WARC\/1\.[01]$/.test(version)) return this.#defect(start, where, `not a WARC record (bad magic "${version.slice(0, 20)}")`, 'seek');
    const fields = parseHeaderLines(Buffer.from(text.slice(nl + 2), 'latin1').toString('utf8'));
    if (!fields) return this.#defect(start, where, 'garbled WARC header line', 'seek');
    const headers = new Map<string, string>();
    const lower = new Map<string, string>();
    const concurrentTo: string[] = [];
    for (const [k, v] of fields) {
      headers.set(k, headers.has(k) ? `${headers.get(k)}, ${v}` : v);
      if (!lower.has(k.toLowerCase())) lower.set(k.toLowerCase(), v);
      if (k.toLowerCase() === 'warc-concurrent-to') concurrentTo.push(...v.split(/\s*,\s*/).filter(Boolean));
    }
    const lenText = lower.get('content-length');
    if (lenText === undefined || !/^\d{1,16}$/.test(lenText) || !Number.isSafeInteger(Number(lenText))) {
      return this.#defect(start, where, `bad Content-Length ${JSON.stringify(lenText ?? null)}`, 'seek');
    }
    const contentLength = Number(lenText);
    if (start + head.length + contentLength > this.streamSize) {
      return this.#defect(start, where, `Content-Length ${contentLength} runs past the end of the file (truncated record)`, 'seek');
    }
    const type = lower.get('warc-type') ?? '';
    if (!type) return this.#defect(start, where, 'record has no WARC-Type', 'seek');
    const contentType = lower.get('content-type');
    const isHttp = HTTP_TYPES.has(type) && (contentType === undefined || contentType.toLowerCase().startsWith('application/http'));
    if (this.#member) {
      if (this.#done) {
        // A second record in the same member: the first cannot be copied as one member.
        const d = this.#done;
        this.#done = undefined;
        this.#emit(d, d.memberOffset ?? 0, 0, false);
      }
      this.#member.records++;
    }
    const payloadDigest = lower.get('warc-payload-digest');
    const checksPayload = type === 'response' || type === 'resource' || type === 'request';
    const sink = this.#rawSink?.(start);
    this.#cur = {
      start,
      memberOffset: this.#member?.offset,
      startsAtMember: this.#member ? this.#member.start === start : true,
      info: {
        kind: 'record',
        file: this.#file,
        offset: where,
        streamOffset: start,
        type,
        headers,
        recordId: lower.get('warc-record-id'),
        targetUri: lower.get('warc-target-uri')?.replace(/^<(.*)>$/, '$1'),
        date: lower.get('warc-date'),
        contentType,
        contentLength,
        concurrentTo,
        refersTo: lower.get('warc-refers-to'),
        blockDigest: lower.get('warc-block-digest'),
        payloadDigest,
        problems: [],
      },
      remaining: contentLength,
      block: new DigestCheck(lower.get('warc-block-digest'), this.#trust),
      payload: checksPayload ? new DigestCheck(payloadDigest, this.#trust) : undefined,
      httpHead: isHttp ? [] : undefined,
      httpHeadBytes: 0,
      dechunk: undefined,
      trailer: 0,
      sink,
    };
    if (sink) await sink.write(head);
    this.#state = contentLength === 0 ? 'trailer' : 'block';
    if (contentLength === 0) this.#finishBlock();
  }

  async #feedBlock(chunk: Buffer, i: number): Promise<number> {
    const cur = this.#cur!;
    const n = Math.min(cur.remaining, chunk.length - i);
    const part = chunk.subarray(i, i + n);
    cur.remaining -= n;
    cur.block.update(part);
    if (cur.sink) await cur.sink.write(part);
    if (cur.httpHead) this.#feedHttpHead(cur, part);
    else this.#feedPayload(cur, part);
    if (cur.remaining === 0) {
      this.#finishBlock();
      this.#state = 'trailer';
    }
    return i + n;
  }

  #feedHttpHead(cur: Current, part: Buffer): void {
    const prev = cur.httpHeadBytes;
    // Usually the whole head (and the payload after it) comes in one part: no copy then.
    const buf = prev === 0 ? part : Buffer.concat([...cur.httpHead!, part]);
    cur.httpHead = [buf];
    cur.httpHeadBytes += part.length;
    const end = buf.indexOf(CRLFCRLF, Math.max(0, prev - 3));
    if (end < 0) {
      if (cur.httpHeadBytes > this.#maxHead) {
        cur.info.problems.push(`HTTP head larger than ${this.#maxHead} bytes`);
        cur.httpHead = undefined;
        cur.payload = undefined;
      }
      return;
    }
    const headText = buf.subarray(0, end).toString('latin1');
    cur.httpHead = undefined;
    const nl = headText.indexOf('\r\n');
    const first = nl < 0 ? headText : headText.slice(0, nl);
    const fields = parseHeaderLines(nl < 0 ? '' : headText.slice(nl + 2)) ?? [];
    cur.info.httpHeaders = fields;
    const status = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(first);
    if (status) cur.info.httpStatus = Number(status[1]);
    else cur.info.httpMethod = /^([A-Z]+) /.exec(first)?.[1];
    const te = fields.find(([k]) => k.toLowerCase() === 'transfer-encoding')?.[1];
    if (te && /chunked/i.test(te) && cur.payload && !cur.payload.trusted) {
      const check = new DigestCheck(cur.info.payloadDigest);
      cur.dechunk = { d: new Dechunker((c) => check.update(c)), check };
    }
    this.#feedPayload(cur, buf.subarray(end + 4));
  }

  #feedPayload(cur: Current, part: Buffer): void {
    if (part.length === 0) return;
    cur.payload?.update(part);
    cur.dechunk?.d.write(part);
  }

  #finishBlock(): void {
    const cur = this.#cur!;
    if (cur.httpHead && cur.info.type !== 'revisit') {
      cur.info.problems.push('HTTP head not terminated by a blank line');
      cur.payload = undefined;
    }
  }

  async #feedTrailer(chunk: Buffer, i: number, pos: number): Promise<number> {
    const cur = this.#cur!;
    while (i < chunk.length && cur.trailer < 4) {
      if (chunk[i] !== CRLFCRLF[cur.trailer]) {
        await this.#defect(cur.start, this.#where(cur.start), `record at stream offset ${cur.start} is not followed by CRLF CRLF (wrong Content-Length?)`, 'seek');
        return i;
      }
      if (cur.sink) await cur.sink.write(chunk.subarray(i, i + 1));
      cur.trailer++;
      i++;
    }
    if (cur.trailer === 4) await this.#complete(cur, pos + i);
    return i;
  }

  async #complete(cur: Current, end: number): Promise<void> {
    this.#cur = undefined;
    this.#state = 'head';
    const info = cur.info;
    const blockDigestOk = cur.block.ok;
    if (blockDigestOk === false) info.problems.push(`block digest mismatch: declared ${info.blockDigest}, computed ${cur.block.sha1}`);
    let payloadDigestOk: boolean | undefined;
    if (cur.payload && (info.type !== 'request' || info.payloadDigest !== undefined)) {
      payloadDigestOk = cur.payload.ok;
      if (payloadDigestOk === false && cur.dechunk?.d.valid && cur.dechunk.check.ok) payloadDigestOk = true;
      if (payloadDigestOk === false) info.problems.push(`payload digest mismatch: declared ${info.payloadDigest}, computed ${cur.payload.sha1}`);
    }
    const done: Done = {
      ...info,
      streamLength: end - cur.start,
      blockDigestOk,
      blockSha1: cur.block.sha1,
      payloadDigestOk,
      payloadSha1: cur.payload?.sha1,
      memberOffset: cur.memberOffset,
      startsAtMember: cur.startsAtMember,
      end,
    };
    if (cur.sink) await cur.sink.end({ ...done, offset: done.memberOffset ?? cur.start, length: end - cur.start, exact: false } as WarcRecordInfo);
    if (this.#member) this.#done = done;
    else this.#emit(done, cur.start, end - cur.start, true);
  }

  /** End of input: a record still open is truncated. */
  async end(pos: number): Promise<void> {
    if (this.#state === 'block' || this.#state === 'trailer' || (this.#state === 'head' && this.#headBytes > 0)) {
      const start = this.#cur?.start ?? this.#headStart;
      await this.#defect(start, this.#where(start), 'truncated record at end of file', 'skip');
      this.resyncFrom = undefined;
    }
    void pos;
  }
}
