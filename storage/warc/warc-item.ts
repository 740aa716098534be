/**
 * What reading a WARC yields (warc-parser.ts, warc-reader.ts): a record's header fields, where
 * it is and whether its digests hold — or a defect, a place in the file that is not a record.
 */
export interface WarcRecordInfo {
  kind: 'record';
  file: string;
  /** gzip: the compressed offset of the member holding the record; plain: the record's byte offset. */
  offset: number;
  /** gzip: the member's compressed length (0 when the member holds more than this record); plain: the record's length. */
  length: number;
  /** offset/length delimit exactly this record (one gzip member, or a plain byte range): it can be copied as is. */
  exact: boolean;
  /** Position and length of the record in the decompressed stream. */
  streamOffset: number;
  streamLength: number;
  type: string;
  /** The record's header fields in their original order and spelling (a repeated name keeps its values joined by ", "). */
  headers: Map<string, string>;
  recordId: string | undefined;
  targetUri: string | undefined;
  date: string | undefined;
  contentType: string | undefined;
  contentLength: number;
  concurrentTo: string[];
  refersTo: string | undefined;
  blockDigest: string | undefined;
  /** undefined: no block digest declared. */
  blockDigestOk: boolean | undefined;
  /** `sha1:BASE32` of the block as read. */
  blockSha1: string;
  payloadDigest: string | undefined;
  /** undefined: not checked (no payload digest, or a record type without a payload). */
  payloadDigestOk: boolean | undefined;
  /** `sha1:BASE32` of the payload as read (HTTP body for response/request, the block for resource). */
  payloadSha1: string | undefined;
  httpStatus?: number;
  httpMethod?: string;
  /** HTTP header fields of a request/response/revisit block. */
  httpHeaders?: [string, string][];
  /** Problems found in this record (digest mismatches, a missing record end); the record is still reported. */
  problems: string[];
}

export interface WarcDefect {
  kind: 'defect';
  file: string;
  offset: number;
  what: string;
}

export type WarcItem = WarcRecordInfo | WarcDefect;

/** Receives the uncompressed bytes of one record (head, block, end); used to re-compress records that are not their own gzip member. */
export interface RawRecordSink {
  write(chunk: Buffer): void | Promise<void>;
  end(record: WarcRecordInfo): void | Promise<void>;
  abort(): void | Promise<void>;
}
