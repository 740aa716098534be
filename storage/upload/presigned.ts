/**
 * Uploads through the tracker: the tracker holds the storage credentials and hands each node
 * pre-signed PUT URLs for its finished WARCs and manifest (`presignPutUrls`); the node streams
 * each file to its URL (`uploadWithPresignedUrl`) and reports `done`; the tracker checks the
 * object is there with the right size and sha256 before accepting `done` (`verifyObject`).
 * Volunteers never see storage credentials.
 *
 * The sha256 is a signed header (`x-amz-meta-sha256`, kept out of the query string), so a node
 * cannot store an object under a URL with any other sha256 than the one it announced, and the
 * tracker can compare it with the manifest. Content-MD5 (not signed, not an x-amz header) lets
 * the store reject damaged bytes; the returned ETag is compared with the local MD5 as well.
 *
 * Before `done` is accepted — and so before a node may free the files under `--max-disk` — the
 * tracker checks the bytes by a checksum the store computed (issue 21 §4): S3's full-object
 * `ChecksumSHA256` when the store keeps one, else it reads the object back and hashes it. Metadata
 * and an ETag of the right length prove nothing: a store may keep damaged bytes under them.
 */
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { request, type Dispatcher } from 'undici';
import { InputError } from '../../config/errors.js';
import { networkCode, UploadError } from './errors.js';
import { assertUnchanged, checksumSha256Hex, digestFile, digestStream, meteredFileBody, stripEtag } from './file-digests.js';
import { backoffMs, isRetryableStatus, parseRetryAfter } from '../../config/retry.js';
import { sleep } from './pacing.js';

export interface PresignFile {
  /** Shard-relative name, e.g. `warcs/x.warc.gz` or `shard.json`. */
  name: string;
  size: number;
  sha256: string;
}

export interface PresignedPut {
  name: string;
  key: string;
  method: 'PUT';
  url: string;
  /** Headers the node must send as they are (they are part of the signature). */
  headers: Record<string, string>;
  expiresAt: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const SAFE_NAME = /^(?!.*\.\.)[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/**
 * Pre-signed PUT URLs for `files` under `prefix`. `expiresSecs` ≤ 7 days (SigV4's limit).
 * Names are checked (no `..`, no absolute paths) so a node cannot write outside its prefix.
 */
export async function presignPutUrls(options: {
  s3Client: S3Client;
  bucket: string;
  prefix: string;
  files: readonly PresignFile[];
  expiresSecs: number;
}): Promise<PresignedPut[]> {
  const { s3Client, bucket, files, expiresSecs } = options;
  const prefix = options.prefix.replace(/^\/+|\/+$/g, '');
  if (!Number.isInteger(expiresSecs) || expiresSecs < 1 || expiresSecs > 7 * 24 * 3600) {
    throw new InputError(`expiresSecs ${expiresSecs}: must be 1..604800 seconds`, { code: 'E_UPLOAD_PRESIGN' });
  }
  // A client that adds flexible checksums by default signs `x-amz-checksum-crc32` of an EMPTY
  // body into the URL (the body is not known when presigning), and the store then rejects
  // every upload. Refuse such a client with a message that says how to build a usable one.
  if ((await s3Client.config.requestChecksumCalculation?.()) === 'WHEN_SUPPORTED') {
    throw new InputError(
      "presign: the S3 client computes request checksums by default, which breaks pre-signed PUTs; create it with requestChecksumCalculation: 'WHEN_REQUIRED' (createS3Client does)",
      { code: 'E_UPLOAD_PRESIGN' },
    );
  }
  const out: PresignedPut[] = [];
  for (const f of files) {
    if (!SAFE_NAME.test(f.name)) throw new InputError(`presign: unsafe file name ${JSON.stringify(f.name)}`, { code: 'E_UPLOAD_PRESIGN' });
    if (!SHA256_HEX.test(f.sha256)) throw new InputError(`presign: ${f.name}: sha256 must be 64 lowercase hex digits`, { code: 'E_UPLOAD_PRESIGN' });
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw new InputError(`presign: ${f.name}: bad size ${f.size}`, { code: 'E_UPLOAD_PRESIGN' });
    const key = prefix ? `${prefix}/${f.name}` : f.name;
    // x-amz-checksum-sha256: a store that knows it (S3) hashes what it receives, refuses other
    // bytes and keeps the checksum, which `verifyObject` then reads instead of the object.
    const checksum = Buffer.from(f.sha256, 'hex').toString('base64');
    const command = new PutObjectCommand({ Bucket: bucket, Key: key, ContentLength: f.size, Metadata: { sha256: f.sha256 }, ChecksumSHA256: checksum });
    const url = await getSignedUrl(s3Client, command, {
      expiresIn: expiresSecs,
      // Keep the sha256s signed headers: the node must send exactly these values.
      unhoistableHeaders: new Set(['x-amz-meta-sha256', 'x-amz-checksum-sha256']),
      signableHeaders: new Set(['content-length']),
    });
    out.push({
      name: f.name,
      key,
      method: 'PUT',
      url,
      headers: { 'x-amz-meta-sha256': f.sha256, 'x-amz-checksum-sha256': checksum },
      expiresAt: new Date(Date.now() + expiresSecs * 1000).toISOString(),
    });
  }
  return out;
}

export interface PresignedUploadResult {
  etag: string;
  bytesSent: number;
  attempts: number;
}

/**
 * Streams `file` to a pre-signed PUT URL (no buffering), retrying network errors, 5xx and 429
 * with backoff. Refuses to start when the file's sha256 is not the announced one; fails with
 * E_UPLOAD_FILE_CHANGED when the file changes while sending.
 */
export async function uploadWithPresignedUrl(options: {
  url: string;
  file: string;
  sha256: string;
  /** The `headers` of the PresignedPut. */
  headers?: Record<string, string>;
  maxAttempts?: number;
  dispatcher?: Dispatcher;
  signal?: AbortSignal;
  onBytes?: (bytes: number) => void;
}): Promise<PresignedUploadResult> {
  const { url, file } = options;
  const maxAttempts = options.maxAttempts ?? 5;
  const digests = await digestFile(file);
  if (digests.sha256 !== options.sha256) {
    throw new UploadError(`${file}: sha256 ${digests.sha256} is not the announced ${options.sha256}; the file changed since it was reported`, {
      code: 'E_UPLOAD_FILE_CHANGED',
      file,
    });
  }
  const host = new URL(url).host;
  for (let attempt = 1; ; attempt++) {
    let sent = 0;
    const body = meteredFileBody(file, (chunk) => {
      sent += chunk.length;
      options.onBytes?.(chunk.length);
    });
    let status: number | undefined;
    let retryable = false;
    let retryAfterMs: number | undefined;
    let error: UploadError;
    try {
      const res = await request(url, {
        method: 'PUT',
        body,
        headers: {
          ...options.headers,
          'content-length': String(digests.size),
          'content-md5': Buffer.from(digests.md5, 'hex').toString('base64'),
        },
        dispatcher: options.dispatcher,
        signal: options.signal,
      });
      status = res.statusCode;
      const text = await res.body.text();
      if (status >= 200 && status < 300) {
        await assertUnchanged(file, file, digests);
        const etag = stripEtag(String(res.headers['etag'] ?? ''));
        const stored = checksumSha256Hex(String(res.headers['x-amz-checksum-sha256'] ?? ''));
        if (stored !== undefined && stored !== digests.sha256) {
          error = new UploadError(`${file}: the store received different bytes (its sha256 ${stored}, local ${digests.sha256})`, { code: 'E_UPLOAD_CHECKSUM', file });
          retryable = true;
        } else if (etag && /^[0-9a-f]{32}$/.test(etag) && etag !== digests.md5) {
          error = new UploadError(`${file}: the store received different bytes (ETag ${etag}, local MD5 ${digests.md5})`, {
            code: 'E_UPLOAD_CHECKSUM',
            file,
          });
          retryable = true;
        } else {
          return { etag, bytesSent: sent, attempts: attempt };
        }
      } else {
        retryable = isRetryableStatus(status);
        const header = res.headers['retry-after'];
        retryAfterMs = parseRetryAfter(Array.isArray(header) ? header[0] : header);
        const code = status === 403 ? 'E_UPLOAD_AUTH' : 'E_UPLOAD_HTTP';
        const hint = status === 403 ? '; the URL expired or was altered — ask the tracker for a new one' : '';
        error = new UploadError(`${file}: PUT to ${host} answered HTTP ${status}${hint}: ${text.slice(0, 200)}`, { code, file, status });
      }
    } catch (err) {
      body.destroy();
      if (err instanceof UploadError) throw err;
      if (options.signal?.aborted) throw err;
      const net = networkCode(err);
      retryable = true;
      error = new UploadError(`${file}: cannot reach ${host} (${net ?? (err as Error).message})`, {
        code: 'E_UPLOAD_UNREACHABLE',
        file,
        cause: err,
      });
    }
    if (!retryable || attempt >= maxAttempts) throw error;
    await sleep(Math.max(retryAfterMs ?? 0, backoffMs(attempt, { baseMs: 250, maxMs: 15_000 })));
  }
}

export type VerifyObjectResult =
  | { ok: true; size: number; etag: string; sha256: string | undefined; checkedBy: 'store-checksum' | 'read-back' }
  | { ok: false; reason: string };

/**
 * For the tracker before it accepts `done`: the object exists, has `size` bytes, (when given) the
 * `sha256` metadata the node was told to send, and its bytes hash to that sha256 — by the
 * store's own `ChecksumSHA256` when it has one for the whole object, else by reading it back.
 */
export async function verifyObject(options: {
  s3Client: S3Client;
  bucket: string;
  key: string;
  size: number;
  sha256?: string;
}): Promise<VerifyObjectResult> {
  let head;
  try {
    head = await options.s3Client.send(new HeadObjectCommand({ Bucket: options.bucket, Key: options.key, ChecksumMode: 'ENABLED' }));
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (err as { name?: string }).name === 'NotFound') return { ok: false, reason: `${options.key}: not found` };
    throw err;
  }
  const remoteSha = head.Metadata?.['sha256'];
  if (head.ContentLength !== options.size) {
    return { ok: false, reason: `${options.key}: size ${head.ContentLength} on the store, ${options.size} expected` };
  }
  if (options.sha256 && remoteSha !== options.sha256) {
    return { ok: false, reason: `${options.key}: sha256 ${remoteSha ?? '(none)'} on the store, ${options.sha256} expected` };
  }
  const expected = options.sha256 ?? remoteSha;
  const etag = stripEtag(head.ETag);
  if (!expected) return { ok: false, reason: `${options.key}: no sha256 to check the stored bytes against` };
  const storeSha = checksumSha256Hex(head.ChecksumSHA256);
  if (storeSha !== undefined) {
    if (storeSha !== expected) return { ok: false, reason: `${options.key}: the store's checksum is sha256 ${storeSha}, ${expected} expected` };
    return { ok: true, size: head.ContentLength, etag, sha256: remoteSha, checkedBy: 'store-checksum' };
  }
  // No checksum of the store's own: read the object back (the store's bytes, hashed here).
  const got = await options.s3Client.send(new GetObjectCommand({ Bucket: options.bucket, Key: options.key }));
  const back = await digestStream(got.Body as AsyncIterable<Uint8Array>);
  if (back.size !== options.size || back.sha256 !== expected) {
    return { ok: false, reason: `${options.key}: read back ${back.size} bytes with sha256 ${back.sha256}, ${options.size} bytes with ${expected} expected` };
  }
  return { ok: true, size: head.ContentLength, etag, sha256: remoteSha, checkedBy: 'read-back' };
}
