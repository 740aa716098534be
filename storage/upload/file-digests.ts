/**
 * A local file as an upload sees it: its digests in one streaming pass (sha256, md5, per-part
 * md5s for a multipart ETag), the check that it did not change while it went up, and its bytes
 * as a metered request body.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { UploadError } from './errors.js';

export const MIB = 1024 * 1024;
/** S3's lower bound for every multipart part but the last. */
export const MIN_PART_SIZE_BYTES = 5 * MIB;
/** S3's upper bound on the number of parts of one object. */
export const MAX_PARTS = 10_000;

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

/** The sha256 (hex) and length of what `body` yields: a store's object read back (issue 21 §4). */
export async function digestStream(body: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }> {
  const sha = createHash('sha256');
  let size = 0;
  for await (const chunk of body) {
    sha.update(chunk);
    size += chunk.length;
  }
  return { sha256: sha.digest('hex'), size };
}

/** An S3 `ChecksumSHA256` (base64) as hex; undefined for none or a composite (`…-N`, multipart) one. */
export function checksumSha256Hex(value: string | undefined): string | undefined {
  if (!value || value.includes('-')) return undefined;
  const raw = Buffer.from(value, 'base64');
  return raw.length === 32 ? raw.toString('hex') : undefined;
}
