/**
 * `lifeboat upload DIR --to s3://BUCKET/PREFIX [--endpoint URL]`: uploads a shard directory to
 * any S3-compatible store through the AWS SDK.
 *
 * Per file: hash (sha256, md5, per-part md5) → skip if the store already holds it identical
 * (size, `x-amz-meta-sha256`, ETag) → upload (lib-storage `Upload` for files below one part — a
 * single PutObject with at most one part of memory; our own resumable multipart above, see
 * multipart.ts) → check the local file did not change → HeadObject: size, sha256 metadata
 * and ETag (MD5 of the whole file, or S3's md5-of-part-md5s `-N` form) → ledger `verified` →
 * optionally delete the local WARC.
 *
 * Why ETag and metadata rather than ChecksumSHA256: s3rver (the test store) and many
 * S3-compatible stores ignore the flexible-checksum headers, and AWS computes SHA256 of a
 * multipart object only as a composite of part checksums, so it could not be compared with the
 * manifest's sha256 anyway. The MD5 ETag is computed by the store from the bytes it received;
 * the metadata sha256 ties the object to the manifest. Stores whose ETag is not an MD5 (SSE-KMS)
 * need `verifyEtag: false`: their objects are then read back and hashed before they count as
 * verified (issue 21 §4: nothing is marked uploaded, and so nothing freed, on metadata alone).
 *
 * Keys mirror the shard layout: `PREFIX/warcs/NAME.warc.gz`, `PREFIX/shard.json`,
 * `PREFIX/shard.sqlite`, so a downloaded prefix is a shard directory again.
 */
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, type HeadObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { InputError } from '../../config/errors.js';
import { readManifest } from '../shard/shard-manifest.js';
import { UploadError } from './errors.js';
import { assertUnchanged, digestFile, digestStream, MAX_PARTS, MIB, MIN_PART_SIZE_BYTES, multipartEtag, stripEtag, type FileDigests } from './file-digests.js';
import { mapLimit } from './pacing.js';
import { TransferMeter, type ProgressListener } from './progress.js';
import { checkAgainstManifest, listShardFiles, type ShardFile } from './shard-files.js';
import { createS3Client, describeS3Error, type S3ClientOptions } from './s3-client.js';
import { parseUploadTarget } from './target.js';
import { UploadLedger, type LedgerKey } from './ledger.js';
import { uploadMultipartFile } from './multipart.js';
import { finishRun, type FileUploadResult, type UploadLogger, type UploadRunResult } from './result.js';

export interface UploadDirectoryOptions extends S3ClientOptions {
  /** The shard directory (`warcs/`, `shard.json`, `shard.sqlite`). */
  dir: string;
  /** `s3://BUCKET/PREFIX`. */
  target: string;
  /** A ready client (owned by the caller, not destroyed here); overrides endpoint/region/credentials. */
  s3Client?: S3Client;
  /** Files uploaded at once. Default 2. */
  concurrency?: number;
  /** Multipart part size in bytes, ≥ 5 MiB; raised automatically so a file needs ≤ 10,000 parts. Default 64 MiB. */
  partSizeBytes?: number;
  /** Parts of one file in flight at once. Default 4. Memory ≈ concurrency × partConcurrency × ~2 MiB. */
  partConcurrency?: number;
  /** Attempts per part before the file fails. Default 4. */
  maxAttempts?: number;
  /** Delete each local WARC after its upload was verified (never shard.json / shard.sqlite). Default false. */
  deleteAfterUpload?: boolean;
  /** Also upload a consistent snapshot of `shard.sqlite`. Default false. */
  includeDatabase?: boolean;
  /** Compare the store's ETag with the local MD5s. Default true; turn off for SSE-KMS stores. */
  verifyEtag?: boolean;
  onProgress?: ProgressListener;
  logger?: UploadLogger;
  signal?: AbortSignal;
  /** Test seam: called after each multipart part is recorded in the ledger. */
  afterPart?: (file: string, partNumber: number) => void | Promise<void>;
}

interface S3Context {
  s3: S3Client;
  bucket: string;
  prefix: string;
  targetUrl: string;
  endpoint: string;
  ledger: UploadLedger;
  meter: TransferMeter;
  options: UploadDirectoryOptions;
  partSizeBytes: number;
  manifest: Awaited<ReturnType<typeof readManifest>>;
}

/**
 * Uploads a shard directory; resolves when every file is verified on the store (or skipped as
 * already there). Throws UploadIncompleteError listing the files that failed (the rest are done
 * and recorded); throws InputError / MissingCredentialsError / UploadError before any upload
 * when the target, credentials or endpoint are unusable.
 */
export async function uploadDirectory(options: UploadDirectoryOptions): Promise<UploadRunResult> {
  const target = parseUploadTarget(options.target);
  if (target.scheme !== 's3') {
    throw new InputError(`uploadDirectory handles s3:// targets; use uploadDirectoryToIa for ${options.target}`, { code: 'E_UPLOAD_SCHEME' });
  }
  const partSizeBytes = options.partSizeBytes ?? 64 * MIB;
  if (!Number.isInteger(partSizeBytes) || partSizeBytes < MIN_PART_SIZE_BYTES) {
    throw new InputError(`partSizeBytes ${partSizeBytes}: must be an integer ≥ ${MIN_PART_SIZE_BYTES} (5 MiB)`, { code: 'E_UPLOAD_PART_SIZE' });
  }
  const files = await listShardFiles(options.dir, { deleteAfterUpload: options.deleteAfterUpload });
  const manifest = await readManifest(options.dir);
  const s3 = options.s3Client ?? createS3Client(options);
  const started = performance.now();
  const ledger = UploadLedger.open(options.dir);
  const meter = new TransferMeter({ onProgress: options.onProgress });
  const ctx: S3Context = {
    s3,
    bucket: target.bucket,
    prefix: target.prefix,
    targetUrl: target.url,
    endpoint: options.endpoint ?? '',
    ledger,
    meter,
    options,
    partSizeBytes,
    manifest,
  };
  try {
    await preflight(ctx);
    for (const f of files) meter.addFile(f.size);
    const settled = await mapLimit(files, options.concurrency ?? 2, (f) => uploadOne(ctx, f));
    const results = settled.map((s, i) =>
      s.status === 'fulfilled' ? s.value : failedResult(ctx, files[i]!, s.reason),
    );
    if (options.includeDatabase && results.every((r) => r.outcome !== 'failed')) {
      results.push(await uploadDatabaseSnapshot(ctx));
    }
    return finishRun(target.url, results, started);
  } finally {
    ledger.close();
    if (!options.s3Client) s3.destroy();
  }
}

/** Fails fast (before hashing gigabytes) when the endpoint, credentials or bucket are unusable. */
async function preflight(ctx: S3Context): Promise<void> {
  try {
    await ctx.s3.send(new HeadBucketCommand({ Bucket: ctx.bucket }), { abortSignal: ctx.options.signal });
  } catch (err) {
    throw describeS3Error(err, { where: `s3://${ctx.bucket}`, endpoint: ctx.endpoint, policy: 'stop' });
  }
}

function objectKey(ctx: S3Context, name: string): string {
  return ctx.prefix ? `${ctx.prefix}/${name}` : name;
}

function ledgerKey(ctx: S3Context, name: string): LedgerKey {
  return { file: name, target: ctx.targetUrl, endpoint: ctx.endpoint };
}

/** Part size for a file: the configured one, raised (to whole MiB) to stay within 10,000 parts. */
export function partSizeFor(size: number, partSizeBytes: number): number {
  const min = Math.ceil(size / MAX_PARTS / MIB) * MIB;
  return Math.max(partSizeBytes, min);
}

async function headObject(ctx: S3Context, key: string): Promise<HeadObjectCommandOutput | undefined> {
  try {
    return await ctx.s3.send(new HeadObjectCommand({ Bucket: ctx.bucket, Key: key }), { abortSignal: ctx.options.signal });
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (err as { name?: string }).name === 'NotFound') return undefined;
    throw err;
  }
}

/** `mismatch`'s answer when only the bytes themselves can tell (`verifyEtag: false`). */
const READ_BACK = '\0read-back';

/** Why the object at `key` is not the file of `digests` by reading it back; undefined when it is. */
async function readBackMismatch(ctx: S3Context, key: string, digests: FileDigests): Promise<string | undefined> {
  const got = await ctx.s3.send(new GetObjectCommand({ Bucket: ctx.bucket, Key: key }), { abortSignal: ctx.options.signal });
  const back = await digestStream(got.Body as AsyncIterable<Uint8Array>);
  return back.size === digests.size && back.sha256 === digests.sha256 ? undefined : `read back ${back.size} bytes with sha256 ${back.sha256}, ${digests.size} bytes with ${digests.sha256} locally`;
}

/** `mismatch`, reading the object back where its ETag cannot be compared. */
async function verifiedMismatch(ctx: S3Context, key: string, head: HeadObjectCommandOutput, digests: FileDigests, partSizeBytes: number): Promise<string | undefined> {
  const why = mismatch(ctx, head, digests, partSizeBytes);
  return why === READ_BACK ? readBackMismatch(ctx, key, digests) : why;
}

/** Why `head` is not the file described by `digests`, or `undefined` when it is (`READ_BACK`: the ETag cannot tell). */
function mismatch(ctx: S3Context, head: HeadObjectCommandOutput, digests: FileDigests, partSizeBytes: number): string | undefined {
  if (head.ContentLength !== digests.size) return `size ${head.ContentLength} on the store, ${digests.size} locally`;
  const remoteSha = head.Metadata?.['sha256'];
  if (remoteSha !== digests.sha256) return `sha256 metadata ${remoteSha ?? '(none)'} on the store, ${digests.sha256} locally`;
  if (ctx.options.verifyEtag === false) return READ_BACK;
  const etag = stripEtag(head.ETag);
  const partMd5s = digests.partMd5s.length > 0 ? digests.partMd5s : [digests.md5];
  const accepted = new Set([digests.md5, multipartEtag(partMd5s)]);
  if (partSizeBytes > 0 && digests.partMd5s.length === 0) accepted.add(multipartEtag([digests.md5]));
  if (!accepted.has(etag)) return `ETag ${etag} on the store matches neither MD5 ${digests.md5} nor ${multipartEtag(partMd5s)}`;
  return undefined;
}

async function uploadOne(ctx: S3Context, file: ShardFile, keyName = file.name): Promise<FileUploadResult> {
  const { ledger, meter, options } = ctx;
  const key = objectKey(ctx, keyName);
  const lk = ledgerKey(ctx, keyName);
  const base = { file: keyName, key, size: file.size, bytesSent: 0, deleted: false };

  // Fast path: the ledger says verified for this very file (size + mtime) → only ask the store.
  const rec = ledger.get(lk);
  const st = await stat(file.path);
  if (rec?.state === 'verified' && rec.size === st.size && rec.mtimeMs === st.mtimeMs && rec.sha256) {
    const head = await headObject(ctx, key);
    if (
      head &&
      head.ContentLength === rec.size &&
      head.Metadata?.['sha256'] === rec.sha256 &&
      (ctx.options.verifyEtag === false || stripEtag(head.ETag) === rec.etag)
    ) {
      meter.credit(keyName, file.size);
      meter.fileDone(keyName);
      return { ...base, outcome: 'skipped', deleted: await maybeDelete(ctx, file, keyName) };
    }
  }

  const partSizeBytes = partSizeFor(file.size, ctx.partSizeBytes);
  const multipart = file.size > partSizeBytes;
  const digests = await digestFile(file.path, multipart ? partSizeBytes : 0);
  if (keyName.startsWith('warcs/')) checkAgainstManifest(ctx.manifest, keyName, digests.sha256, file.expectSha256);

  const existing = await headObject(ctx, key);
  if (existing && !(await verifiedMismatch(ctx, key, existing, digests, multipart ? partSizeBytes : 0))) {
    ledger.markVerified(lk, { key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256, etag: stripEtag(existing.ETag) });
    meter.credit(keyName, file.size);
    meter.fileDone(keyName);
    options.logger?.info('already on the store, skipped', { file: keyName, key });
    return { ...base, outcome: 'skipped', deleted: await maybeDelete(ctx, file, keyName) };
  }

  const metadata = { sha256: digests.sha256 };
  const contentType = keyName.endsWith('.json') ? 'application/json' : 'application/octet-stream';
  let partsSent: number | undefined;
  let partsReused: number | undefined;
  try {
  if (multipart) {
    const r = await uploadMultipartFile({
      s3: ctx.s3,
      bucket: ctx.bucket,
      key,
      path: file.path,
      name: keyName,
      digests,
      partSizeBytes,
      partConcurrency: options.partConcurrency ?? 4,
      maxAttempts: options.maxAttempts ?? 4,
      ledger,
      ledgerKey: lk,
      metadata,
      contentType,
      meter,
      signal: options.signal,
      afterPart: options.afterPart ? (n) => options.afterPart!(keyName, n) : undefined,
    });
    partsSent = r.partsSent;
    partsReused = r.partsReused;
    if (r.resumed) options.logger?.info('resumed multipart upload', { file: keyName, partsReused: r.partsReused, partsSent: r.partsSent });
  } else {
    ledger.begin(lk, { key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256 });
    await putSmallFile(ctx, file, keyName, key, digests, metadata, contentType);
  }
  } catch (err) {
    // A failure caused by the file changing under us (BadDigest, short read) says so.
    await assertUnchanged(file.path, keyName, digests);
    throw err;
  }

  await assertUnchanged(file.path, keyName, digests);
  const head = await headObject(ctx, key);
  const why = head ? await verifiedMismatch(ctx, key, head, digests, multipart ? partSizeBytes : 0) : 'object missing after upload';
  if (why) {
    const code = head && head.ContentLength !== digests.size ? 'E_UPLOAD_SIZE_MISMATCH' : 'E_UPLOAD_CHECKSUM';
    throw new UploadError(`${keyName}: verification failed after upload: ${why}; not marked uploaded`, { code, file: keyName });
  }
  ledger.markVerified(lk, { key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256, etag: stripEtag(head!.ETag) });
  meter.fileDone(keyName);
  return {
    ...base,
    outcome: 'uploaded',
    bytesSent: meter.sentBy(keyName),
    partsSent,
    partsReused,
    deleted: await maybeDelete(ctx, file, keyName),
  };
}

/**
 * One PutObject through lib-storage's `Upload`: for a body smaller than one part it sends a
 * single request (memory ≤ the file), and gives progress events. The bytes are hashed on the
 * way so a file that changed between hashing and sending is caught.
 */
async function putSmallFile(
  ctx: S3Context,
  file: ShardFile,
  name: string,
  key: string,
  digests: FileDigests,
  metadata: Record<string, string>,
  contentType: string,
): Promise<void> {
  const hash = createHash('md5');
  const body = new PassThrough();
  const source = createReadStream(file.path, { highWaterMark: MIB });
  source.on('data', (chunk) => hash.update(chunk));
  source.on('error', (err) => body.destroy(err));
  source.pipe(body);
  const upload = new Upload({
    client: ctx.s3,
    params: { Bucket: ctx.bucket, Key: key, Body: body, ContentLength: digests.size, Metadata: metadata, ContentType: contentType },
    queueSize: 1,
    partSize: Math.max(MIN_PART_SIZE_BYTES, digests.size + 1),
    leavePartsOnError: false,
  });
  let last = 0;
  upload.on('httpUploadProgress', (p) => {
    const loaded = p.loaded ?? 0;
    if (loaded > last) ctx.meter.add(name, loaded - last);
    last = loaded;
  });
  await upload.done();
  if (last < digests.size) ctx.meter.add(name, digests.size - last);
  if (hash.digest('hex') !== digests.md5) {
    throw new UploadError(`${name}: the file changed while it was being uploaded; not marked uploaded`, { code: 'E_UPLOAD_FILE_CHANGED', file: name });
  }
}

async function maybeDelete(ctx: S3Context, file: ShardFile, name: string): Promise<boolean> {
  if (!ctx.options.deleteAfterUpload || !name.startsWith('warcs/')) return false;
  await rm(file.path, { force: true });
  ctx.options.logger?.info('deleted local file after verified upload', { file: name });
  return true;
}

function failedResult(ctx: S3Context, file: ShardFile, reason: unknown): FileUploadResult {
  const error = describeS3Error(reason, { where: file.name, endpoint: ctx.endpoint, file: file.name });
  ctx.ledger.noteError(ledgerKey(ctx, file.name), error.message);
  ctx.options.logger?.warn('upload failed', { file: file.name, code: error.code, error: error.message });
  return { file: file.name, key: objectKey(ctx, file.name), size: file.size, bytesSent: 0, deleted: false, outcome: 'failed', error };
}

/** `shard.sqlite` is live (WAL, and this run writes the ledger into it): upload a backup snapshot. */
async function uploadDatabaseSnapshot(ctx: S3Context): Promise<FileUploadResult> {
  const snapshot = join(ctx.options.dir, '.shard.sqlite.upload-snapshot');
  await ctx.ledger.snapshot(snapshot);
  try {
    const st = await stat(snapshot);
    const file: ShardFile = { name: 'shard.sqlite', path: snapshot, size: st.size };
    ctx.meter.addFile(st.size);
    return await uploadOne(ctx, file, 'shard.sqlite').catch((err: unknown) => failedResult(ctx, file, err));
  } finally {
    await rm(snapshot, { force: true });
  }
}
