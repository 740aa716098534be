/**
 * `lifeboat upload DIR --to ia://IDENTIFIER`: the Internet Archive's S3-like API ("IAS3",
 * https://archive.org/developers/ias3.html; header conventions as in the `internetarchive`
 * Python library). One PUT per file, `PUT {endpoint}/{identifier}/{filename}`, body streamed
 * from disk with undici (never buffered). The item is created by the first PUT
 * (`x-archive-auto-make-bucket`), which also carries the item metadata; the other files follow
 * once it succeeded. Files land flat in the item (`NAME.warc.gz`, `shard.json`).
 *
 * Verification: Content-MD5 makes the archive refuse damaged bytes; afterwards HEAD must show
 * the file with the local size and the MD5 as its ETag — or, when the server gives no MD5 ETag,
 * the file is read back (GET) and its sha256 compared (issue 21 §4: nothing is marked uploaded,
 * and so nothing freed, on a size alone). The archive may take a moment to show a new file, so
 * HEAD is polled for up to `verifyWaitMs`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { request, type Dispatcher } from 'undici';
import { InputError, LifeboatError } from '../../config/errors.js';
import { readManifest, type ManifestOnDisk } from '../shard/shard-manifest.js';
import { MissingCredentialsError, networkCode, UNREACHABLE_CODES, UploadError } from './errors.js';
import { assertUnchanged, digestFile, digestStream, meteredFileBody, stripEtag, type FileDigests } from './file-digests.js';
import { backoffMs, isRetryableStatus, parseRetryAfter, retrying } from '../../config/retry.js';
import { mapLimit, sleep } from './pacing.js';
import { TransferMeter, type ProgressListener } from './progress.js';
import { checkAgainstManifest, listShardFiles, type ShardFile } from './shard-files.js';
import { parseUploadTarget } from './target.js';
import { UploadLedger, type LedgerKey } from './ledger.js';
import { finishRun, type FileUploadResult, type UploadLogger, type UploadRunResult } from './result.js';

export const IA_DEFAULT_ENDPOINT = 'https://s3.us.archive.org';

export interface IaCredentials {
  accessKey: string;
  secretKey: string;
}

/**
 * IA S3 keys from `IA_ACCESS_KEY` / `IA_SECRET_KEY` in `env` (first), else from the first
 * readable `configFile` in the `ia` tool's ini format (`[s3]` section, `access =`, `secret =`).
 * The CLI passes `process.env` and the default paths (see `defaultIaConfigFiles`).
 */
export function readIaCredentials(options: { env?: Record<string, string | undefined>; configFile?: string | readonly string[] }): IaCredentials {
  const access = options.env?.['IA_ACCESS_KEY'];
  const secret = options.env?.['IA_SECRET_KEY'];
  if (access && secret) return { accessKey: access, secretKey: secret };
  const files = typeof options.configFile === 'string' ? [options.configFile] : (options.configFile ?? []);
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const s3 = parseIni(text)['s3'] ?? {};
    if (s3['access'] && s3['secret']) return { accessKey: s3['access'], secretKey: s3['secret'] };
  }
  throw new MissingCredentialsError(
    `no Internet Archive S3 keys: set IA_ACCESS_KEY and IA_SECRET_KEY, or run \`ia configure\` (looked in ${files.join(', ') || 'no config file'}); keys are at https://archive.org/account/s3.php`,
  );
}

/** Where the `ia` tool keeps its config, in its own order of preference. */
export function defaultIaConfigFiles(env: Record<string, string | undefined>, home: string): string[] {
  const xdg = env['XDG_CONFIG_HOME'] || join(home, '.config');
  return [env['IA_CONFIG_FILE'], join(xdg, 'internetarchive', 'ia.ini'), join(home, '.config', 'ia.ini'), join(home, '.ia')].filter(
    (p): p is string => Boolean(p),
  );
}

function parseIni(text: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let section = '';
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!.trim();
      continue;
    }
    const kv = /^([^=:]+)[=:](.*)$/.exec(line);
    if (kv) (out[section] ??= {})[kv[1]!.trim()] = kv[2]!.trim();
  }
  return out;
}

/** Item metadata; each value becomes an `x-archive-meta*-KEY` header on the item-creating PUT. */
export interface IaItemMetadata {
  collection?: string | string[];
  title?: string;
  /** `YYYY-MM-DD` (or `YYYY`, `YYYY-MM`). */
  date?: string;
  description?: string;
  subject?: string | string[];
  /** Any other IA metadata field (e.g. `creator`, `language`). */
  [field: string]: string | string[] | undefined;
}

/** Item metadata derived from the shard manifest and the WARC names; options override it. */
export function iaMetadataFromManifest(manifest: ManifestOnDisk | undefined, files: readonly ShardFile[], now = new Date()): IaItemMetadata {
  const profile = manifest?.profile ?? 'unknown';
  const ranges = Array.isArray(manifest?.ranges) ? manifest.ranges.join(',') : (manifest?.ranges ?? '');
  const stamps = files.map((f) => /-(\d{4})(\d{2})(\d{2})\d{6}-/.exec(f.name)).filter((m): m is RegExpExecArray => m !== null);
  const first = stamps.map((m) => `${m[1]}-${m[2]}-${m[3]}`).sort()[0];
  const counts = manifest?.counts ? Object.entries(manifest.counts).map(([k, v]) => `${k} ${v}`).join(', ') : '';
  return {
    title: `lifeboat: ${profile} posts${ranges ? ` ${ranges}` : ''}`,
    date: first ?? now.toISOString().slice(0, 10),
    description: `WARC captures of public posts (profile ${profile}${ranges ? `, IDs ${ranges}` : ''}${counts ? `; ${counts}` : ''}) made by ${manifest?.software ?? 'lifeboat'}.`,
    subject: ['lifeboat', profile, 'warc'],
  };
}

/**
 * IA's convention for header values that are not plain ASCII words: `uri(percent-encoded)`.
 * Needed for non-ASCII and whitespace (HTTP header values cannot carry either safely).
 */
export function encodeIaHeaderValue(value: string): string {
  return /[^\x21-\x7e]/.test(value) ? `uri(${encodeURIComponent(value)})` : value;
}

/**
 * `x-archive-meta-KEY: value` for a single value; `x-archive-meta01-KEY`, `…02-…` for repeated
 * values (IA keeps them as a list). `_` in a key is written `--` as IA requires.
 */
export function iaMetadataHeaders(metadata: IaItemMetadata): Record<string, string> {
  const headers: Record<string, string> = { 'x-archive-meta-mediatype': 'web' };
  for (const [key, raw] of Object.entries(metadata)) {
    if (raw === undefined || raw === '' || (Array.isArray(raw) && raw.length === 0)) continue;
    const name = key.toLowerCase().replace(/_/g, '--');
    if (!/^[a-z0-9-]+$/.test(name)) throw new InputError(`IA metadata field ${JSON.stringify(key)}: use letters, digits, - and _`, { code: 'E_UPLOAD_IA_METADATA' });
    const values = Array.isArray(raw) ? raw : [raw];
    if (values.length === 1) headers[`x-archive-meta-${name}`] = encodeIaHeaderValue(values[0]!);
    else values.forEach((v, i) => (headers[`x-archive-meta${String(i + 1).padStart(2, '0')}-${name}`] = encodeIaHeaderValue(v)));
  }
  return headers;
}

export interface IaUploadOptions {
  dir: string;
  /** `ia://IDENTIFIER`. */
  target: string;
  /** Default https://s3.us.archive.org. */
  endpoint?: string;
  credentials: IaCredentials;
  /** Overrides the metadata derived from shard.json (mediatype is always `web`). */
  metadata?: IaItemMetadata;
  /** Files uploaded at once after the first. Default 2. */
  concurrency?: number;
  /** `x-archive-queue-derive`. Default false: WARCs need no derivatives. */
  queueDerive?: boolean;
  deleteAfterUpload?: boolean;
  /** Attempts per file on 503 SlowDown, other 5xx, 429 and network errors. Default 8. */
  maxAttempts?: number;
  /** First backoff step; doubles per attempt, full jitter, capped at 60 s. Default 2000 ms. */
  retryBaseMs?: number;
  /** How long HEAD may keep saying 404 after a successful PUT. Default 120 s. */
  verifyWaitMs?: number;
  dispatcher?: Dispatcher;
  onProgress?: ProgressListener;
  logger?: UploadLogger;
  signal?: AbortSignal;
  /** Test seam for the jitter. */
  random?: () => number;
}

interface IaContext {
  o: IaUploadOptions;
  base: string;
  identifier: string;
  targetUrl: string;
  endpoint: string;
  ledger: UploadLedger;
  meter: TransferMeter;
  manifest: ManifestOnDisk | undefined;
}

/** Uploads a shard directory into an archive.org item. Same results and errors as uploadDirectory. */
export async function uploadDirectoryToIa(o: IaUploadOptions): Promise<UploadRunResult> {
  const target = parseUploadTarget(o.target);
  if (target.scheme !== 'ia') throw new InputError(`uploadDirectoryToIa handles ia:// targets, not ${o.target}`, { code: 'E_UPLOAD_SCHEME' });
  if (!o.credentials?.accessKey || !o.credentials.secretKey) throw new MissingCredentialsError('no Internet Archive S3 keys given; see readIaCredentials');
  const files = await listShardFiles(o.dir, { deleteAfterUpload: o.deleteAfterUpload });
  const manifest = await readManifest(o.dir);
  const metadata = { ...iaMetadataFromManifest(manifest, files), ...o.metadata };
  const metaHeaders = iaMetadataHeaders(metadata);
  const started = performance.now();
  const ledger = UploadLedger.open(o.dir);
  const meter = new TransferMeter({ onProgress: o.onProgress });
  const endpoint = (o.endpoint ?? IA_DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const ctx: IaContext = { o, base: endpoint, identifier: target.identifier, targetUrl: target.url, endpoint: o.endpoint ?? '', ledger, meter, manifest };
  try {
    for (const f of files) meter.addFile(f.size);
    const total = files.reduce((a, f) => a + f.size, 0);
    const results: FileUploadResult[] = [];
    // The first file creates the item (and carries its metadata); it goes alone, and a
    // failure that concerns the whole run (auth, endpoint) stops here.
    const [first, ...rest] = files;
    if (first) {
      const firstHeaders = { ...metaHeaders, 'x-archive-auto-make-bucket': '1', 'x-archive-size-hint': String(total) };
      const r = await uploadOne(ctx, first, firstHeaders).catch((err: unknown) => {
        if (err instanceof LifeboatError && err.policy === 'stop') throw err;
        return failed(ctx, first, err);
      });
      results.push(r);
    }
    const settled = await mapLimit(rest, o.concurrency ?? 2, (f) => uploadOne(ctx, f, {}));
    settled.forEach((s, i) => results.push(s.status === 'fulfilled' ? s.value : failed(ctx, rest[i]!, s.reason)));
    return finishRun(target.url, results, started);
  } finally {
    ledger.close();
  }
}

function failed(ctx: IaContext, file: ShardFile, reason: unknown): FileUploadResult {
  const error = reason instanceof LifeboatError ? reason : new UploadError(`${file.name}: ${(reason as Error).message}`, { code: 'E_UPLOAD_HTTP', file: file.name, cause: reason });
  ctx.ledger.noteError(ledgerKey(ctx, file.name), error.message);
  ctx.o.logger?.warn('upload failed', { file: file.name, code: error.code, error: error.message });
  return { file: file.name, key: itemPath(ctx, file.name), size: file.size, outcome: 'failed', bytesSent: 0, deleted: false, error };
}

const itemPath = (ctx: IaContext, name: string): string => `${ctx.identifier}/${basename(name)}`;
const ledgerKey = (ctx: IaContext, name: string): LedgerKey => ({ file: name, target: ctx.targetUrl, endpoint: ctx.endpoint });
const fileUrl = (ctx: IaContext, name: string): string => `${ctx.base}/${encodeURIComponent(ctx.identifier)}/${encodeURIComponent(basename(name))}`;

async function uploadOne(ctx: IaContext, file: ShardFile, extraHeaders: Record<string, string>): Promise<FileUploadResult> {
  const { o, ledger, meter } = ctx;
  const lk = ledgerKey(ctx, file.name);
  const key = itemPath(ctx, file.name);
  const base = { file: file.name, key, size: file.size, deleted: false };
  const digests = await digestFile(file.path);
  if (file.name.startsWith('warcs/')) checkAgainstManifest(ctx.manifest, file.name, digests.sha256, file.expectSha256);
  const present = await head(ctx, file.name);
  // Already there: by its MD5 ETag, or — a server that gives none — by reading it back (never by size alone).
  const md5Etag = present.etag !== undefined && /^[0-9a-f]{32}$/.test(present.etag);
  if (present.status === 200 && present.size === digests.size && (md5Etag ? present.etag === digests.md5 : await sameWhenReadBack(ctx, file.name, digests))) {
    ledger.markVerified(lk, { key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256, etag: present.etag || digests.md5 });
    meter.credit(file.name, file.size);
    meter.fileDone(file.name);
    return { ...base, outcome: 'skipped', bytesSent: 0, deleted: await maybeDelete(ctx, file) };
  }
  ledger.begin(lk, { key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256 });
  const headers: Record<string, string> = {
    authorization: `LOW ${o.credentials.accessKey}:${o.credentials.secretKey}`,
    'content-length': String(digests.size),
    // Hex, as the `internetarchive` library sends it: the archive refuses the file if the MD5 differs.
    'content-md5': digests.md5,
    'content-type': file.name.endsWith('.json') ? 'application/json' : 'application/octet-stream',
    // No derivative formats (OCR, thumbnails…): pointless for WARCs, and it saves the archive work.
    'x-archive-queue-derive': o.queueDerive ? '1' : '0',
    // How big the item will be, so the archive places it on a server with room (overridden on the first file with the whole shard).
    'x-archive-size-hint': String(digests.size),
    ...extraHeaders,
  };
  const bytesSent = await putWithBackoff(ctx, file, digests, headers);
  await assertUnchanged(file.path, file.name, digests);
  const etag = await verifyByHead(ctx, file.name, digests);
  ledger.markVerified(lk, { key, size: digests.size, mtimeMs: digests.mtimeMs, sha256: digests.sha256, etag: etag || digests.md5 });
  meter.fileDone(file.name);
  return { ...base, outcome: 'uploaded', bytesSent, deleted: await maybeDelete(ctx, file) };
}

/** PUT with bounded retries (config/retry.ts): 5xx, 429, BadDigest and network errors back off (full jitter, Retry-After honoured). */
async function putWithBackoff(ctx: IaContext, file: ShardFile, digests: FileDigests, headers: Record<string, string>): Promise<number> {
  const { o, meter } = ctx;
  const maxAttempts = o.maxAttempts ?? 8;
  const url = fileUrl(ctx, file.name);
  const { value } = await retrying<number>(
    {
      maxAttempts,
      backoffBaseMs: o.retryBaseMs ?? 2000,
      ...(o.random ? { random: o.random } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onRetry: (_reason, r) => {
        if (r.attempt < r.maxAttempts) o.logger?.info('archive asked to slow down; retrying', { file: file.name, status: (r.error as UploadError).status, attempt: r.attempt, waitMs: r.waitMs });
      },
      giveUp: (last) => last,
    },
    async (attempt) => {
      let sent = 0;
      const hash = createHash('md5');
      const body = meteredFileBody(file.path, (chunk) => {
        sent += chunk.length;
        hash.update(chunk);
        meter.add(file.name, chunk.length);
      });
      let error: UploadError;
      let retryAfterMs: number | undefined;
      try {
        const res = await request(url, { method: 'PUT', body, headers, dispatcher: o.dispatcher, signal: o.signal });
        const text = await res.body.text();
        if (res.statusCode >= 200 && res.statusCode < 300) {
          if (hash.digest('hex') !== digests.md5) {
            throw new UploadError(`${file.name}: the file changed while it was being uploaded; not marked uploaded`, { code: 'E_UPLOAD_FILE_CHANGED', file: file.name });
          }
          return { ok: sent };
        }
        const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? '';
        const header = res.headers['retry-after'];
        retryAfterMs = parseRetryAfter(Array.isArray(header) ? header[0] : header);
        const status = res.statusCode;
        if (status === 401 || status === 403) {
          throw new UploadError(`${ctx.targetUrl}: the archive refused the keys (HTTP ${status} ${code}); check IA_ACCESS_KEY/IA_SECRET_KEY and that you may write to this item`, {
            code: 'E_UPLOAD_AUTH',
            file: file.name,
            status,
            policy: 'stop',
          });
        }
        error = new UploadError(`${file.name}: PUT ${url} answered HTTP ${status}${code ? ` ${code}` : ''}${attempt > 1 ? ` after ${attempt} attempts` : ''}`, {
          code: code === 'BadDigest' ? 'E_UPLOAD_CHECKSUM' : 'E_UPLOAD_HTTP',
          file: file.name,
          status,
          policy: isRetryableStatus(status) || code === 'BadDigest' ? 'retry' : 'give-up',
        });
      } catch (err) {
        body.destroy();
        if (err instanceof UploadError || o.signal?.aborted) throw err;
        const net = networkCode(err);
        error = new UploadError(`${file.name}: cannot reach ${ctx.base} (${net ?? (err as Error).message})`, {
          code: 'E_UPLOAD_UNREACHABLE',
          file: file.name,
          policy: net !== undefined && UNREACHABLE_CODES.has(net) && attempt === 1 ? 'stop' : 'retry',
          cause: err,
        });
        if (error.policy === 'stop') throw error;
      }
      meter.rewind(file.name, sent);
      if (error.policy !== 'retry') throw error;
      return retryAfterMs !== undefined ? { retry: error, waitMs: retryAfterMs } : { retry: error };
    },
  );
  return value;
}

async function head(ctx: IaContext, name: string): Promise<{ status: number; size?: number; etag?: string }> {
  let url = fileUrl(ctx, name);
  for (let hop = 0; hop < 4; hop++) {
    const res = await request(url, {
      method: 'HEAD',
      headers: { authorization: `LOW ${ctx.o.credentials.accessKey}:${ctx.o.credentials.secretKey}` },
      dispatcher: ctx.o.dispatcher,
      signal: ctx.o.signal,
    }).catch((err: unknown) => {
      throw new UploadError(`${ctx.targetUrl}: cannot reach ${ctx.base} (${networkCode(err) ?? (err as Error).message}); check --endpoint and the network`, {
        code: 'E_UPLOAD_UNREACHABLE',
        policy: 'stop',
        cause: err,
      });
    });
    await res.body.dump();
    const location = res.headers['location'];
    if (res.statusCode >= 300 && res.statusCode < 400 && typeof location === 'string') {
      url = new URL(location, url).toString();
      continue;
    }
    const len = res.headers['content-length'];
    return { status: res.statusCode, size: len === undefined ? undefined : Number(len), etag: stripEtag(String(res.headers['etag'] ?? '')) || undefined };
  }
  return { status: 310 };
}

/** The file as the archive serves it, hashed (redirects followed, as `head` does). */
async function readBack(ctx: IaContext, name: string): Promise<{ size: number; sha256: string }> {
  let url = fileUrl(ctx, name);
  for (let hop = 0; hop < 4; hop++) {
    const res = await request(url, {
      method: 'GET',
      headers: { authorization: `LOW ${ctx.o.credentials.accessKey}:${ctx.o.credentials.secretKey}` },
      dispatcher: ctx.o.dispatcher,
      signal: ctx.o.signal,
    }).catch((err: unknown) => {
      throw new UploadError(`${ctx.targetUrl}: cannot reach ${ctx.base} (${networkCode(err) ?? (err as Error).message}) to read ${name} back`, { code: 'E_UPLOAD_UNREACHABLE', policy: 'retry', cause: err });
    });
    const location = res.headers['location'];
    if (res.statusCode >= 300 && res.statusCode < 400 && typeof location === 'string') {
      await res.body.dump();
      url = new URL(location, url).toString();
      continue;
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new UploadError(`${name}: reading it back from the archive answered HTTP ${res.statusCode}; not marked uploaded — run upload again later to verify`, { code: 'E_UPLOAD_CHECKSUM', file: name, status: res.statusCode });
    }
    return digestStream(res.body);
  }
  throw new UploadError(`${name}: reading it back from the archive redirected too often; not marked uploaded`, { code: 'E_UPLOAD_CHECKSUM', file: name });
}

/** Whether the archive's copy of `name` hashes to the local file's sha256 (false when it cannot be read). */
async function sameWhenReadBack(ctx: IaContext, name: string, digests: FileDigests): Promise<boolean> {
  const back = await readBack(ctx, name).catch(() => undefined);
  return back !== undefined && back.size === digests.size && back.sha256 === digests.sha256;
}

async function verifyByHead(ctx: IaContext, name: string, digests: FileDigests): Promise<string | undefined> {
  const deadline = performance.now() + (ctx.o.verifyWaitMs ?? 120_000);
  for (let attempt = 0; ; attempt++) {
    const h = await head(ctx, name);
    if (h.status === 200) {
      if (h.size !== digests.size) {
        throw new UploadError(`${name}: the archive holds ${h.size} bytes, the local file ${digests.size}; not marked uploaded`, { code: 'E_UPLOAD_SIZE_MISMATCH', file: name });
      }
      if (h.etag && /^[0-9a-f]{32}$/.test(h.etag)) {
        if (h.etag !== digests.md5) {
          throw new UploadError(`${name}: the archive's MD5 ${h.etag} differs from the local ${digests.md5}; not marked uploaded`, { code: 'E_UPLOAD_CHECKSUM', file: name });
        }
        return h.etag;
      }
      const back = await readBack(ctx, name);
      if (back.size !== digests.size || back.sha256 !== digests.sha256) {
        throw new UploadError(`${name}: read back from the archive, ${back.size} bytes with sha256 ${back.sha256}, the local file ${digests.size} bytes with ${digests.sha256}; not marked uploaded`, { code: 'E_UPLOAD_CHECKSUM', file: name });
      }
      return h.etag;
    }
    if (performance.now() > deadline) {
      throw new UploadError(`${name}: uploaded, but HEAD still answers ${h.status}; not marked uploaded — run upload again later to verify`, {
        code: 'E_UPLOAD_SIZE_MISMATCH',
        file: name,
        status: h.status,
      });
    }
    await sleep(backoffMs(attempt + 1, { baseMs: 250, maxMs: 10_000, jitter: 'none' }));
  }
}

async function maybeDelete(ctx: IaContext, file: ShardFile): Promise<boolean> {
  if (!ctx.o.deleteAfterUpload || !file.name.startsWith('warcs/')) return false;
  await rm(file.path, { force: true });
  ctx.o.logger?.info('deleted local file after verified upload', { file: file.name });
  return true;
}
