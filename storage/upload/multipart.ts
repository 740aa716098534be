/**
 * Resumable S3 multipart upload of one local file.
 *
 * Why not lib-storage's `Upload` here: `Upload` buffers each part in memory (partSize ×
 * queueSize bytes per file) and keeps its UploadId and part ETags in memory only, so a killed
 * process starts over and re-sends every part. This module drives CreateMultipartUpload /
 * UploadPart / CompleteMultipartUpload itself:
 *
 * - each part is streamed from disk (`createReadStream({start, end})`, 1 MiB buffers), so memory
 *   is a few MiB per part in flight whatever the part size;
 * - the UploadId is recorded in the ledger before the first part, and each part (number, ETag,
 *   size) as soon as the store acknowledges it;
 * - on restart, ListParts on the recorded UploadId says which parts landed (stores that do not
 *   implement ListParts, such as s3rver, fall back to the ledger's own record), and only the
 *   missing or mismatching parts are sent;
 * - each part carries Content-MD5 (the store rejects damaged bytes), and the returned ETag is
 *   compared with the MD5 of the bytes actually streamed and with the MD5 taken before upload,
 *   which tells a file that changed under us from bytes damaged on the way.
 *
 * Unfinished uploads are not aborted on failure — that is what makes them resumable; a bucket
 * lifecycle rule (AbortIncompleteMultipartUpload) cleans up ones that are never resumed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListPartsCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { UploadError } from './errors.js';
import { MIB, stripEtag, type FileDigests } from './file-digests.js';
import { backoffMs, isRetryableStatus } from '../../config/retry.js';
import { mapLimit, sleep } from './pacing.js';
import { TransferMeter } from './progress.js';
import type { LedgerKey, LedgerPart, UploadLedger } from './ledger.js';

export interface MultipartFileOptions {
  s3: S3Client;
  bucket: string;
  key: string;
  /** Local path and its shard-relative name (for messages and progress). */
  path: string;
  name: string;
  digests: FileDigests;
  partSizeBytes: number;
  /** Parts of this file in flight at once. */
  partConcurrency: number;
  /** Attempts per part (network errors, 5xx, damaged bytes) before the file fails. */
  maxAttempts: number;
  ledger: UploadLedger;
  ledgerKey: LedgerKey;
  /** Stored with the object: `x-amz-meta-*` (keys without the prefix). */
  metadata: Record<string, string>;
  contentType: string;
  meter: TransferMeter;
  signal?: AbortSignal;
  /** Test seam: called after each part is recorded; a throw stops the upload like a crash would. */
  afterPart?: (partNumber: number) => void | Promise<void>;
}

export interface MultipartFileResult {
  etag: string;
  partsSent: number;
  partsReused: number;
  /** Whether an UploadId recorded by an earlier run was resumed. */
  resumed: boolean;
}

/** Error names a store gives when it does not implement ListParts. */
const LIST_PARTS_UNSUPPORTED = new Set(['NotImplemented', 'MethodNotAllowed', 'XNotImplemented']);

export async function uploadMultipartFile(o: MultipartFileOptions): Promise<MultipartFileResult> {
  const { digests, partSizeBytes } = o;
  const partCount = digests.partMd5s.length;
  const expectedSize = (n: number): number => (n < partCount ? partSizeBytes : digests.size - partSizeBytes * (partCount - 1));

  let uploadId: string | undefined;
  let landed = new Map<number, LedgerPart>();
  const rec = o.ledger.get(o.ledgerKey);
  if (
    rec?.state === 'uploading' &&
    rec.uploadId &&
    rec.sha256 === digests.sha256 &&
    rec.size === digests.size &&
    rec.partSizeBytes === partSizeBytes &&
    rec.key === o.key
  ) {
    const parts = await listLandedParts(o, rec.uploadId, rec.parts);
    if (parts) {
      uploadId = rec.uploadId;
      for (const p of parts) {
        // A part counts only if the store holds exactly the bytes we would send now.
        if (p.n <= partCount && p.size === expectedSize(p.n) && stripEtag(p.etag) === digests.partMd5s[p.n - 1]) landed.set(p.n, p);
      }
      o.ledger.setParts(o.ledgerKey, [...landed.values()].sort((a, b) => a.n - b.n));
    }
  }
  const resumed = uploadId !== undefined;
  if (!uploadId) {
    o.ledger.begin(o.ledgerKey, { key: o.key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256, partSizeBytes });
    const created = await o.s3.send(
      new CreateMultipartUploadCommand({ Bucket: o.bucket, Key: o.key, Metadata: o.metadata, ContentType: o.contentType }),
      { abortSignal: o.signal },
    );
    if (!created.UploadId) throw new UploadError(`${o.name}: the store returned no UploadId`, { code: 'E_UPLOAD_HTTP', file: o.name });
    uploadId = created.UploadId;
    o.ledger.setUploadId(o.ledgerKey, uploadId);
    landed = new Map();
  }
  for (const p of landed.values()) o.meter.credit(o.name, p.size);

  const missing = Array.from({ length: partCount }, (_, i) => i + 1).filter((n) => !landed.has(n));
  const id = uploadId;
  // After the first failure no new part starts (parts in flight finish and are recorded).
  let failure: { reason: unknown } | undefined;
  await mapLimit(missing, o.partConcurrency, async (n) => {
    if (failure) return;
    try {
      const part = await sendPart(o, id, n, expectedSize(n));
      o.ledger.addPart(o.ledgerKey, part);
      landed.set(n, part);
      await o.afterPart?.(n);
    } catch (reason) {
      failure ??= { reason };
    }
  });
  if (failure) throw failure.reason;

  const parts = [...landed.values()].sort((a, b) => a.n - b.n);
  const done = await o.s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: o.bucket,
      Key: o.key,
      UploadId: id,
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.n, ETag: `"${stripEtag(p.etag)}"` })) },
    }),
    { abortSignal: o.signal },
  );
  // The UploadId is spent once completed: if verification then fails, the next run starts a new
  // upload instead of completing this one again (which a store without ListParts answers 500).
  o.ledger.begin(o.ledgerKey, { key: o.key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256, partSizeBytes });
  return { etag: stripEtag(done.ETag), partsSent: missing.length, partsReused: partCount - missing.length, resumed };
}

/**
 * The parts the store holds for `uploadId`: from ListParts, or from the ledger when the store
 * does not implement ListParts. `undefined` when the upload no longer exists (start over).
 */
async function listLandedParts(o: MultipartFileOptions, uploadId: string, recorded: LedgerPart[]): Promise<LedgerPart[] | undefined> {
  const parts: LedgerPart[] = [];
  let marker: string | undefined;
  try {
    for (;;) {
      const page = await o.s3.send(
        new ListPartsCommand({ Bucket: o.bucket, Key: o.key, UploadId: uploadId, PartNumberMarker: marker }),
        { abortSignal: o.signal },
      );
      for (const p of page.Parts ?? []) {
        if (p.PartNumber !== undefined && p.ETag && p.Size !== undefined) parts.push({ n: p.PartNumber, etag: stripEtag(p.ETag), size: p.Size });
      }
      if (!page.IsTruncated || !page.NextPartNumberMarker) return parts;
      marker = page.NextPartNumberMarker;
    }
  } catch (err) {
    const name = (err as { name?: string }).name ?? '';
    if (name === 'NoSuchUpload') return undefined;
    if (LIST_PARTS_UNSUPPORTED.has(name) || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 405) {
      return recorded;
    }
    throw err;
  }
}

/** Streams one part from disk, with retries; returns its ledger record. */
async function sendPart(o: MultipartFileOptions, uploadId: string, n: number, size: number): Promise<LedgerPart> {
  const start = (n - 1) * o.partSizeBytes;
  const expectedMd5 = o.digests.partMd5s[n - 1]!;
  for (let attempt = 1; ; attempt++) {
    const hash = createHash('md5');
    let sent = 0;
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        hash.update(chunk);
        sent += chunk.length;
        o.meter.add(o.name, chunk.length);
        cb(null, chunk);
      },
    });
    const source = createReadStream(o.path, { start, end: start + size - 1, highWaterMark: MIB });
    source.on('error', (err) => counter.destroy(err));
    const body = source.pipe(counter);
    try {
      const res = await o.s3.send(
        new UploadPartCommand({
          Bucket: o.bucket,
          Key: o.key,
          UploadId: uploadId,
          PartNumber: n,
          Body: body,
          ContentLength: size,
          ContentMD5: Buffer.from(expectedMd5, 'hex').toString('base64'),
        }),
        { abortSignal: o.signal },
      );
      const streamedMd5 = hash.digest('hex');
      if (sent !== size || streamedMd5 !== expectedMd5) {
        throw new UploadError(
          `${o.name}: part ${n} read back different bytes than when the file was hashed; the file changed during upload — not marked uploaded`,
          { code: 'E_UPLOAD_FILE_CHANGED', file: o.name },
        );
      }
      const etag = stripEtag(res.ETag);
      if (/^[0-9a-f]{32}$/.test(etag) && etag !== expectedMd5) {
        throw new UploadError(`${o.name}: part ${n} arrived damaged (store MD5 ${etag}, sent ${expectedMd5})`, {
          code: 'E_UPLOAD_CHECKSUM',
          file: o.name,
          policy: 'retry',
        });
      }
      return { n, etag, size };
    } catch (err) {
      source.destroy();
      o.meter.rewind(o.name, sent);
      if (o.signal?.aborted || !isRetryablePartError(err) || attempt >= o.maxAttempts) throw err;
      await sleep(backoffMs(attempt, { baseMs: 200, maxMs: 10_000 }));
    }
  }
}

function isRetryablePartError(err: unknown): boolean {
  if (err instanceof UploadError) return err.policy === 'retry';
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown; code?: string };
  const status = e.$metadata?.httpStatusCode;
  if (e.name === 'BadDigest' || e.name === 'RequestTimeout' || e.name === 'SlowDown') return true;
  if (status !== undefined) return isRetryableStatus(status);
  return true; // network-level failure: no HTTP reply at all
}
