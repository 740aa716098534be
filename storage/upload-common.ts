/**
 * Pieces shared by every upload target (S3, Internet Archive, pre-signed URLs): the error
 * class, target parsing, the list of files a shard directory uploads, file digests computed
 * in one streaming pass, and a transfer meter for MB/s and ETA.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { InputError, LifeboatError, type ErrorPolicy } from '../config/errors.js';
import { checkInputFile } from './input-file.js';

export const MIB = 1024 * 1024;
/** S3's lower bound for every multipart part but the last. */
export const MIN_PART_SIZE_BYTES = 5 * MIB;
/** S3's upper bound on the number of parts of one object. */
export const MAX_PARTS = 10_000;

/**
 * Stable codes of upload failures. A file whose upload fails with any of these is never marked
 * verified in the ledger and never deleted.
 */
export const UPLOAD_ERROR_CODES = [
  'E_UPLOAD_UNREACHABLE', // endpoint refused the connection / DNS / timeout
  'E_UPLOAD_AUTH', // the store rejected the credentials (403, InvalidAccessKeyId, SignatureDoesNotMatch)
  'E_UPLOAD_HTTP', // any other non-success reply, after retries
  'E_UPLOAD_SIZE_MISMATCH', // the stored object's size differs from the local file
  'E_UPLOAD_CHECKSUM', // an ETag/MD5/sha256 of the stored bytes differs from the local bytes
  'E_UPLOAD_FILE_CHANGED', // the local file changed while it was being uploaded
  'E_UPLOAD_MANIFEST_MISMATCH', // shard.json lists a different sha256 for the local WARC
  'E_UPLOAD_FAILED', // summary error: one or more files failed (see `failures`)
] as const;
export type UploadErrorCode = (typeof UPLOAD_ERROR_CODES)[number];

/** An upload that did not (or may not) land intact. `file` is the shard-relative path. */
export class UploadError extends LifeboatError {
  readonly file: string | undefined;
  readonly status: number | undefined;
  constructor(
    message: string,
    options: { code: UploadErrorCode; file?: string; status?: number; policy?: ErrorPolicy; cause?: unknown },
  ) {
    super(message, { code: options.code, policy: options.policy ?? 'give-up', cause: options.cause });
    this.file = options.file;
    this.status = options.status;
  }
}

/** Raised when a required credential is missing: the CLI exits 2 and says where to put it. */
export class MissingCredentialsError extends InputError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { code: 'E_UPLOAD_CREDENTIALS', cause: options.cause });
  }
}

export type UploadTarget =
  | { scheme: 's3'; bucket: string; prefix: string; url: string }
  | { scheme: 'ia'; identifier: string; url: string };

const IA_IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9_.-]{2,99}$/;
const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses `--to`: `s3://BUCKET/PREFIX` or `ia://IDENTIFIER`. Anything else is an InputError. */
export function parseUploadTarget(to: string): UploadTarget {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(.*)$/.exec(to);
  if (!m) throw new InputError(`--to ${JSON.stringify(to)}: expected s3://BUCKET/PREFIX or ia://IDENTIFIER`, { code: 'E_UPLOAD_TARGET' });
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  if (scheme === 's3') {
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (!S3_BUCKET.test(bucket)) {
      throw new InputError(`--to ${to}: ${JSON.stringify(bucket)} is not a valid S3 bucket name`, { code: 'E_UPLOAD_TARGET' });
    }
    return { scheme: 's3', bucket, prefix, url: prefix ? `s3://${bucket}/${prefix}` : `s3://${bucket}` };
  }
  if (scheme === 'ia') {
    const identifier = rest.replace(/\/+$/, '');
    if (!IA_IDENTIFIER.test(identifier)) {
      throw new InputError(
        `--to ${to}: ${JSON.stringify(identifier)} is not a valid archive.org identifier (3-100 of A-Z a-z 0-9 _ - ., starting with a letter or digit)`,
        { code: 'E_UPLOAD_TARGET' },
      );
    }
    return { scheme: 'ia', identifier, url: `ia://${identifier}` };
  }
  throw new InputError(`--to ${to}: unknown scheme "${scheme}://"; use s3://BUCKET/PREFIX or ia://IDENTIFIER`, {
    code: 'E_UPLOAD_SCHEME',
  });
}

/** A file of a shard directory to upload; `name` is relative to the directory, with `/`. */
export interface ShardFile {
  name: string;
  path: string;
  size: number;
}

/**
 * The files a shard uploads: finished `warcs/*.warc.gz` (never `*.open`), then `shard.json`.
 * Only regular files (a link only when it resolves to a regular file inside the directory, see
 * input-file.ts), and when `shard.json` exists only the WARCs it lists: anything else in `warcs/`
 * (a link to /etc/passwd, a FIFO, a file the manifest does not know) stops the upload with an
 * InputError naming it, before anything is sent. A merge directory has no shard.json: its
 * regular WARCs are sent. `shard.sqlite` is left to the caller (it must be snapshotted first, see upload-s3.ts).
 */
export async function listShardFiles(dir: string): Promise<ShardFile[]> {
  let names: string[];
  try {
    names = await readdir(join(dir, 'warcs'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new InputError(`${dir}: not a shard directory (no warcs/ folder)`, { code: 'E_UPLOAD_NO_SHARD', cause: err });
    }
    throw err;
  }
  const manifestPath = join(dir, 'shard.json');
  const manifestCheck = await checkInputFile(manifestPath, dir);
  const manifest = manifestCheck.ok ? await readShardManifest(dir) : undefined;
  if (!manifestCheck.ok && (await lstat(manifestPath).catch(() => undefined))) {
    throw new InputError(`${manifestPath}: ${manifestCheck.what}`, { code: 'E_UPLOAD_NOT_REGULAR' });
  }
  const listed = manifest ? new Set((manifest.warcs ?? []).map((w) => w.name)) : undefined;
  const files: ShardFile[] = [];
  for (const name of names.filter((n) => n.endsWith('.warc.gz')).sort()) {
    const path = join(dir, 'warcs', name);
    const check = await checkInputFile(path, dir);
    if (!check.ok) throw new InputError(`${path}: ${check.what}; nothing uploaded — remove it first`, { code: 'E_UPLOAD_NOT_REGULAR' });
    if (listed && !listed.has(name)) {
      throw new InputError(`${path}: not listed in shard.json, so not uploaded; nothing uploaded — run \`lifeboat verify\` (is a crawl still running?)`, { code: 'E_UPLOAD_NOT_LISTED' });
    }
    files.push({ name: `warcs/${name}`, path, size: check.size });
  }
  if (manifestCheck.ok) files.push({ name: 'shard.json', path: manifestPath, size: manifestCheck.size });
  return files;
}

const ManifestSchema = z.looseObject({
  profile: z.string().optional(),
  ranges: z.union([z.string(), z.array(z.string())]).optional(),
  counts: z.record(z.string(), z.number()).optional(),
  software: z.string().optional(),
  warcs: z.array(z.looseObject({ name: z.string(), size: z.number().optional(), sha256: z.string().optional() })).optional(),
});
export type ShardManifest = z.infer<typeof ManifestSchema>;

/** Reads `DIR/shard.json`; `undefined` when absent. A manifest that does not parse is an InputError. */
export async function readShardManifest(dir: string): Promise<ShardManifest | undefined> {
  const path = join(dir, 'shard.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return ManifestSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new InputError(`${path}: not a valid shard manifest: ${(err as Error).message}`, { code: 'E_UPLOAD_MANIFEST', cause: err });
  }
}

/** Throws E_UPLOAD_MANIFEST_MISMATCH when the manifest lists `name` with another sha256. */
export function checkAgainstManifest(manifest: ShardManifest | undefined, name: string, sha256: string): void {
  const base = name.replace(/^warcs\//, '');
  const entry = manifest?.warcs?.find((w) => w.name === base || w.name === name);
  if (entry?.sha256 && entry.sha256.toLowerCase() !== sha256) {
    throw new UploadError(
      `${name}: sha256 ${sha256} differs from ${entry.sha256} in shard.json; the file is damaged or the manifest is stale — run \`lifeboat verify\` first`,
      { code: 'E_UPLOAD_MANIFEST_MISMATCH', file: name },
    );
  }
}

export interface FileDigests {
  size: number;
  mtimeMs: number;
  sha256: string;
  /** MD5 of the whole file, hex (the ETag of a single-PUT object). */
  md5: string;
  /** MD5 (hex) of each `partSizeBytes` slice, when a part size was given. */
  partMd5s: string[];
}

/** One streaming pass over the file: sha256, md5 and per-part md5s. Memory: one read buffer. */
export async function digestFile(path: string, partSizeBytes = 0): Promise<FileDigests> {
  const before = await stat(path);
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  const partMd5s: string[] = [];
  let part = partSizeBytes > 0 ? createHash('md5') : undefined;
  let inPart = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: MIB }) as AsyncIterable<Buffer>) {
    sha.update(chunk);
    md5.update(chunk);
    if (!part) continue;
    let off = 0;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, partSizeBytes - inPart);
      part.update(chunk.subarray(off, off + take));
      inPart += take;
      off += take;
      if (inPart === partSizeBytes) {
        partMd5s.push(part.digest('hex'));
        part = createHash('md5');
        inPart = 0;
      }
    }
  }
  if (part && inPart > 0) partMd5s.push(part.digest('hex'));
  const after = await stat(path);
  if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
    throw new UploadError(`${path}: changed while it was being hashed; is a crawl still writing it?`, {
      code: 'E_UPLOAD_FILE_CHANGED',
      file: path,
    });
  }
  return { size: before.size, mtimeMs: before.mtimeMs, sha256: sha.digest('hex'), md5: md5.digest('hex'), partMd5s };
}

/** The ETag S3 gives a multipart object: md5 of the concatenated binary part md5s, `-N`. */
export function multipartEtag(partMd5s: readonly string[]): string {
  const h = createHash('md5');
  for (const p of partMd5s) h.update(Buffer.from(p, 'hex'));
  return `${h.digest('hex')}-${partMd5s.length}`;
}

export function stripEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/"/g, '').toLowerCase();
}

/** Throws E_UPLOAD_FILE_CHANGED if the file's size or mtime moved since `digests` were taken. */
export async function assertUnchanged(path: string, name: string, digests: Pick<FileDigests, 'size' | 'mtimeMs'>): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st || st.size !== digests.size || st.mtimeMs !== digests.mtimeMs) {
    throw new UploadError(
      `${name}: the local file changed during upload (size ${digests.size} → ${st?.size ?? 'deleted'}); not marked uploaded — finish the crawl, then run upload again`,
      { code: 'E_UPLOAD_FILE_CHANGED', file: name },
    );
  }
}

/** Progress of a whole upload run, handed to `onProgress`. */
export interface UploadProgress {
  /** The file that just moved (shard-relative name). */
  file: string;
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Recent throughput over the last few seconds, in MB/s (10^6 bytes). */
  mbPerSec: number;
  /** Seconds left at the recent rate; `undefined` until a rate is known. */
  etaSecs: number | undefined;
}
export type ProgressListener = (progress: UploadProgress) => void;

/** Counts bytes, computes a sliding-window rate, and throttles `onProgress` calls. */
export class TransferMeter {
  readonly #listener: ProgressListener | undefined;
  readonly #windowMs: number;
  readonly #intervalMs: number;
  readonly #samples: Array<{ t: number; bytes: number }> = [];
  #bytesTotal = 0;
  #bytesDone = 0;
  #filesTotal = 0;
  #filesDone = 0;
  #lastEmit = 0;

  constructor(options: { onProgress?: ProgressListener; windowMs?: number; intervalMs?: number } = {}) {
    this.#listener = options.onProgress;
    this.#windowMs = options.windowMs ?? 5000;
    this.#intervalMs = options.intervalMs ?? 250;
  }

  addFile(bytes: number): void {
    this.#filesTotal += 1;
    this.#bytesTotal += bytes;
  }

  /** Bytes confirmed already present (skip, or parts landed before a crash): done, but not rate. */
  credit(file: string, bytes: number): void {
    this.#bytesDone += bytes;
    this.#emit(file, false);
  }

  add(file: string, bytes: number): void {
    this.#bytesDone += bytes;
    const t = performance.now();
    this.#samples.push({ t, bytes: this.#bytesDone });
    while (this.#samples.length > 2 && this.#samples[0]!.t < t - this.#windowMs) this.#samples.shift();
    this.#emit(file, false);
  }

  /** Takes back bytes of an attempt that failed and will be re-sent. */
  rewind(bytes: number): void {
    this.#bytesDone = Math.max(0, this.#bytesDone - bytes);
  }

  fileDone(file: string): void {
    this.#filesDone += 1;
    this.#emit(file, true);
  }

  get bytesDone(): number {
    return this.#bytesDone;
  }

  mbPerSec(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.t - first.t < 1) return 0;
    return (last.bytes - first.bytes) / 1e6 / ((last.t - first.t) / 1000);
  }

  #emit(file: string, force: boolean): void {
    if (!this.#listener) return;
    const now = performance.now();
    if (!force && now - this.#lastEmit < this.#intervalMs) return;
    this.#lastEmit = now;
    const rate = this.mbPerSec();
    const left = Math.max(0, this.#bytesTotal - this.#bytesDone);
    this.#listener({
      file,
      bytesDone: this.#bytesDone,
      bytesTotal: this.#bytesTotal,
      filesDone: this.#filesDone,
      filesTotal: this.#filesTotal,
      mbPerSec: rate,
      etaSecs: rate > 0 ? left / 1e6 / rate : undefined,
    });
  }
}

/** Full-jitter exponential backoff: a random delay in [0, min(cap, base·2^attempt)). */
export function backoffMs(attempt: number, options: { baseMs?: number; capMs?: number; random?: () => number } = {}): number {
  const base = options.baseMs ?? 500;
  const cap = options.capMs ?? 30_000;
  return Math.floor((options.random ?? Math.random)() * Math.min(cap, base * 2 ** attempt));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `worker` over `items` with at most `limit` in flight; resolves with settled results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, worker: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: 'fulfilled', value: await worker(items[i]!) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, run));
  return results;
}

/**
 * A file's bytes as a request body that sees every chunk the HTTP client actually consumes.
 * Listening for 'data' on the file stream itself would switch it to flowing mode before the
 * client attaches (it waits for a connection first), and the chunks read meanwhile would never
 * be sent: the server then gets fewer bytes than Content-Length. The transform stays paused
 * until the client reads from it.
 */
export function meteredFileBody(path: string, onChunk: (chunk: Buffer) => void): Transform {
  const body = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      onChunk(chunk);
      done(null, chunk);
    },
  });
  const source = createReadStream(path, { highWaterMark: MIB });
  source.on('error', (err) => body.destroy(err));
  body.on('close', () => source.destroy());
  source.pipe(body);
  return body;
}

/** Node's network error codes that mean "could not reach the endpoint at all". */
export const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export function networkCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (UNREACHABLE_CODES.has(code) || code === 'ECONNRESET' || code === 'EPIPE' || code.startsWith('UND_ERR'))) return code;
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) return networkCode(errors[0]);
  }
  return undefined;
}
