/**
 * How WARC records become gzip members (ARCHITECTURE.md "WARC files": one member per record): deflated in one
 * call for small records, stored deflate blocks for bytes that are already compressed.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { BlockPart, BodySource } from './capture.js';
import { RECORD_END } from './warc-record.js';

const gzipAsync = promisify(zlib.gzip);

/**
 * Bodies that are already compressed (a Content-Encoding, or images, video, audio, archives) go
 * into their gzip member as stored deflate blocks (level 0): deflating random-looking bytes
 * saves nothing and ran at ~20 MB/s here, against ~160 MB/s stored. Still one valid gzip member
 * per record; every WARC reader handles stored blocks.
 */
export function alreadyCompressed(responseHead: Buffer): boolean {
  const head = responseHead.toString('latin1');
  const encoding = /^content-encoding:[ \t]*([^\r\n]*)/im.exec(head)?.[1]?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') return true;
  const type = /^content-type:[ \t]*([^\r\n;]*)/im.exec(head)?.[1]?.trim().toLowerCase() ?? '';
  if (type === 'image/svg+xml' || type === 'image/bmp') return false;
  return /^(image|video|audio)\//.test(type) || /(zip|gzip|x-7z|x-rar|x-xz|x-bzip2|woff2?|pdf|octet-stream)/.test(type);
}

const SYNC_LIMIT = 64 * 1024;

/**
 * Small records (JSON, most pages) are deflated synchronously with a window sized to the
 * record: measured here, 25-35 µs of CPU each, against ~400 µs for an async call on the thread
 * pool (engine set-up and hand-off dominate small inputs). Larger ones go to the pool.
 */
export function compress(data: Buffer, level: number): Promise<Buffer> | Buffer {
  // Records under 1 KiB (mostly requests: UUIDs and digests) deflate to ~85% of their size; not worth ~30 us each.
  if (data.length < 1024) return storedGzipMember(data);
  if (data.length > SYNC_LIMIT) return gzipAsync(data, { level });
  const bits = Math.ceil(Math.log2(data.length + 1));
  return zlib.gzipSync(data, { level, windowBits: Math.max(12, Math.min(15, bits)), memLevel: bits <= 12 ? 4 : 8 });
}

export const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
export const STORED_BLOCK = 65535;

/**
 * One gzip member holding `data` in stored (uncompressed) deflate blocks, built directly: a copy
 * and a CRC, no deflate engine and no thread-pool round trip.
 */
export function storedGzipMember(data: Buffer): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / STORED_BLOCK));
  const out = Buffer.allocUnsafe(GZIP_HEADER.length + blocks * 5 + data.length + 8);
  let pos = GZIP_HEADER.copy(out, 0);
  for (let i = 0; i < blocks; i++) {
    const start = i * STORED_BLOCK;
    const len = Math.min(STORED_BLOCK, data.length - start);
    out[pos++] = i === blocks - 1 ? 1 : 0;
    out.writeUInt16LE(len, pos);
    out.writeUInt16LE(~len & 0xffff, pos + 2);
    pos += 4;
    pos += data.copy(out, pos, start, start + len);
  }
  out.writeUInt32LE(zlib.crc32(data) >>> 0, pos);
  out.writeUInt32LE(data.length % 2 ** 32, pos + 4);
  return out;
}

/** Below this a stored member is built as one buffer: a copy costs less than the extra iovecs and hash updates. */
const PARTS_FROM_BYTES = 64 * 1024;

/**
 * The same gzip member as `storedGzipMember(Buffer.concat(parts))`, byte for byte, as buffers to
 * write in order: block headers between views of `parts`, so a large body is not copied (each copy
 * of a fresh buffer cost ~0.6 ms per MiB here, as much as a SHA-1 of it).
 */
export function storedGzipMemberParts(parts: Buffer[]): Buffer[] {
  let total = 0;
  let crc = 0;
  for (const p of parts) {
    total += p.length;
    crc = zlib.crc32(p, crc);
  }
  if (total < PARTS_FROM_BYTES) return [storedGzipMember(parts.length === 1 ? parts[0]! : Buffer.concat(parts, total))];
  const out: Buffer[] = [GZIP_HEADER];
  const blocks = Math.ceil(total / STORED_BLOCK);
  let part = 0;
  let at = 0;
  for (let i = 0; i < blocks; i++) {
    const len = Math.min(STORED_BLOCK, total - i * STORED_BLOCK);
    const head = Buffer.allocUnsafe(5);
    head[0] = i === blocks - 1 ? 1 : 0;
    head.writeUInt16LE(len, 1);
    head.writeUInt16LE(~len & 0xffff, 3);
    out.push(head);
    for (let need = len; need > 0; ) {
      const p = parts[part]!;
      const take = Math.min(need, p.length - at);
      if (take > 0) out.push(p.subarray(at, at + take));
      at += take;
      need -= take;
      if (at === p.length) {
        part++;
        at = 0;
      }
    }
  }
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(total % 2 ** 32, 4);
  out.push(trailer);
  return out;
}

/**
 * A large record of already-compressed bytes as one gzip member of stored deflate blocks, built
 * while the bytes arrive: a copy and a running CRC, no deflate stream (which ran at a fraction of
 * the speed for the same output). `write` appends to the WARC file, in order.
 */
export async function writeStoredMember(chunks: AsyncIterable<Buffer>, write: (data: Buffer) => Promise<void>): Promise<void> {
  let crc = 0;
  let total = 0;
  let pending: Buffer | undefined;
  // Every block but the last is emitted when the next data arrives: its BFINAL bit must be 0.
  const emit = async (data: Buffer, last: boolean): Promise<void> => {
    for (let start = 0; start < data.length || (last && start === 0); start += STORED_BLOCK) {
      const piece = data.subarray(start, start + STORED_BLOCK);
      const final = last && start + STORED_BLOCK >= data.length;
      const out = Buffer.allocUnsafe(5 + piece.length);
      out[0] = final ? 1 : 0;
      out.writeUInt16LE(piece.length, 1);
      out.writeUInt16LE(~piece.length & 0xffff, 3);
      piece.copy(out, 5);
      await write(out);
      if (final) break;
    }
  };
  const feed = async (data: Buffer): Promise<void> => {
    if (data.length === 0) return;
    crc = zlib.crc32(data, crc);
    total += data.length;
    if (pending) await emit(pending, false);
    pending = data;
  };
  await write(GZIP_HEADER);
  for await (const chunk of chunks) await feed(chunk);
  await emit(pending ?? Buffer.alloc(0), true);
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(total % 2 ** 32, 4);
  await write(trailer);
}

/** A record's bytes in order: its head, its block parts (buffers or spooled files) and the end marker. */
export async function* blockChunks(head: Buffer, block: BlockPart[]): AsyncGenerator<Buffer> {
  yield head;
  for (const p of block) {
    if (Buffer.isBuffer(p)) yield p;
    else if (p.kind === 'buffer') yield p.data;
    else yield* createReadStream(p.path, { highWaterMark: 4 * 65535 }) as AsyncIterable<Buffer>;
  }
  yield RECORD_END;
}

export async function readSmallBody(body: BodySource): Promise<Buffer> {
  if (body.kind === 'buffer') return body.data;
  return readFile(body.path);
}
