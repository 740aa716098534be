/**
 * Record building, pure (ARCHITECTURE.md "WARC files"; the warcio.js split of record from serializer): a capture
 * or a warcinfo/resource/metadata record becomes a `RecordSpec` — its WARC fields and its block
 * parts, in order. No I/O: a spooled body stays a reference to its file. The rolling file
 * (warc-writer.ts) compresses specs into gzip members and appends them.
 */
import { bodyLength, type BlockPart, type Capture } from './capture.js';
import { alreadyCompressed } from './warc-compress.js';
import { RECORD_END, recordHead, REVISIT_PROFILE, sha1Of, warcDate, warcFields, type WarcType } from './warc-record.js';

/** The payload digest of an empty request body (every GET): computed once, not per capture. */
const EMPTY_SHA1 = sha1Of(Buffer.alloc(0));

/** An earlier record of the same URL with the same payload: the response becomes a revisit of it. */
export interface RevisitTarget {
  recordId: string;
  url: string;
  date: string;
}

/** One record before compression: fields in order (Block-Digest and Content-Length are added by `recordHeadOf`). */
export interface RecordSpec {
  type: WarcType;
  recordId: string;
  fields: [string, string | number | undefined][];
  block: BlockPart[];
  /** Known block digest (a capture's, computed while it streamed in); else computed from buffer parts. */
  blockDigest?: string;
  /** True when the block is already compressed: its gzip member stores it (deflate saved nothing). */
  stored?: boolean;
}

export function blockLength(block: BlockPart[]): number {
  let length = 0;
  for (const p of block) length += Buffer.isBuffer(p) ? p.length : bodyLength(p);
  return length;
}

/** The record's header block, with WARC-Block-Digest (when known) and Content-Length last. */
export function recordHeadOf(spec: RecordSpec): Buffer {
  const digest = spec.blockDigest ?? (spec.block.every(Buffer.isBuffer) ? sha1Of(...(spec.block as Buffer[])) : undefined);
  return recordHead([...spec.fields, ['WARC-Block-Digest', digest], ['Content-Length', blockLength(spec.block)]]);
}

/** A record whose block parts are all buffers, as its uncompressed bytes (tests, golden fixtures). */
export function recordBytes(spec: RecordSpec): Buffer {
  if (!spec.block.every(Buffer.isBuffer)) throw new TypeError('recordBytes: the block holds a spooled body');
  return Buffer.concat([recordHeadOf(spec), ...(spec.block as Buffer[]), RECORD_END]);
}

/** The warcinfo record that starts each file. */
export function warcinfoRecord(o: { recordId: string; date: Date; filename: string; fields: Record<string, string | undefined> }): RecordSpec {
  const info = warcFields({ ...o.fields, format: 'WARC File Format 1.1', conformsTo: 'http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/' });
  return {
    type: 'warcinfo',
    recordId: o.recordId,
    fields: [
      ['WARC-Type', 'warcinfo'],
      ['WARC-Record-ID', o.recordId],
      ['WARC-Date', warcDate(o.date)],
      ['WARC-Filename', o.filename],
      ['Content-Type', 'application/warc-fields'],
    ],
    block: [info],
  };
}

/**
 * A capture as its two records, response (or revisit, when `revisitOf` is given) first, then the
 * request linked to it by WARC-Concurrent-To. Records name no WARC-Warcinfo-ID: they are built
 * before the file they land in is known, so that compression runs in parallel.
 */
export function captureRecords(capture: Capture, ids: { response: string; request: string }, revisitOf?: RevisitTarget): [RecordSpec, RecordSpec] {
  const common: [string, string | undefined][] = [
    ['WARC-Date', warcDate(capture.fetchedAt)],
    ['WARC-Target-URI', capture.url],
    ['WARC-IP-Address', capture.remoteAddress],
  ];
  const response: RecordSpec = revisitOf
    ? {
        type: 'revisit',
        recordId: ids.response,
        fields: [
          ['WARC-Type', 'revisit'],
          ['WARC-Record-ID', ids.response],
          ...common,
          ['WARC-Profile', REVISIT_PROFILE],
          ['WARC-Refers-To', revisitOf.recordId],
          ['WARC-Refers-To-Target-URI', revisitOf.url],
          ['WARC-Refers-To-Date', revisitOf.date],
          ['WARC-Payload-Digest', capture.payloadDigest],
          ['WARC-Truncated', 'length'],
          ['Content-Type', 'application/http;msgtype=response'],
        ],
        block: [capture.responseHead],
      }
    : {
        type: 'response',
        recordId: ids.response,
        fields: [
          ['WARC-Type', 'response'],
          ['WARC-Record-ID', ids.response],
          ...common,
          ['WARC-Payload-Digest', capture.payloadDigest],
          ['WARC-Truncated', capture.truncated],
          ['Content-Type', 'application/http;msgtype=response'],
        ],
        block: [capture.responseHead, capture.body],
        blockDigest: capture.blockDigest,
        stored: alreadyCompressed(capture.responseHead),
      };
  const request: RecordSpec = {
    type: 'request',
    recordId: ids.request,
    fields: [
      ['WARC-Type', 'request'],
      ['WARC-Record-ID', ids.request],
      ...common,
      ['WARC-Concurrent-To', ids.response],
      ['WARC-Payload-Digest', capture.requestBody ? sha1Of(capture.requestBody) : EMPTY_SHA1],
      ['Content-Type', 'application/http;msgtype=request'],
    ],
    block: capture.requestBody ? [capture.requestHead, capture.requestBody] : [capture.requestHead],
  };
  return [response, request];
}

/** A `resource` (e.g. a screenshot) or `metadata` record (e.g. what extraction found). */
export function extraRecord(o: { type: 'resource' | 'metadata'; recordId: string; date: Date; url: string; contentType: string; data: Buffer; concurrentTo?: string }): RecordSpec {
  return {
    type: o.type,
    recordId: o.recordId,
    fields: [
      ['WARC-Type', o.type],
      ['WARC-Record-ID', o.recordId],
      ['WARC-Date', warcDate(o.date)],
      ['WARC-Target-URI', o.url],
      ['WARC-Concurrent-To', o.concurrentTo],
      ['WARC-Payload-Digest', o.type === 'resource' ? sha1Of(o.data) : undefined],
      ['Content-Type', o.contentType],
    ],
    block: [o.data],
  };
}
