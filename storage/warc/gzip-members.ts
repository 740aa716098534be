import { open, type FileHandle } from 'node:fs/promises';
import zlib from 'node:zlib';

/**
 * Reads a file of concatenated gzip members (a `.warc.gz`) one member at a time, with exact
 * compressed offsets and lengths, CRC and size checks, and constant memory: decompressed bytes are
 * handed to a sink chunk by chunk. This is what crash repair, verify and merge stand on.
 */
export class GzipMemberError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} (gzip member at offset ${offset})`);
    this.offset = offset;
  }
}

export interface MemberInfo {
  offset: number;
  /** Compressed length: header + deflate data + trailer. */
  length: number;
  /** Uncompressed length. */
  size: number;
}

const READ_CHUNK = 256 * 1024;

/** The length of the gzip header at the start of `buf` (a member at file offset `offset`). */
export function gzipHeaderLength(buf: Buffer, offset: number): number {
  if (buf.length < 10) throw new GzipMemberError('truncated gzip header', offset);
  if (buf[0] !== 0x1f || buf[1] !== 0x8b || buf[2] !== 8) throw new GzipMemberError('not a gzip member', offset);
  const flags = buf[3]!;
  let pos = 10;
  if (flags & 4) {
    if (buf.length < pos + 2) throw new GzipMemberError('truncated gzip header', offset);
    pos += 2 + buf.readUInt16LE(pos);
  }
  for (const bit of [8, 16]) {
    if (flags & bit) {
      const end = buf.indexOf(0, pos);
      if (end < 0) throw new GzipMemberError('truncated gzip header', offset);
      pos = end + 1;
    }
  }
  if (flags & 2) pos += 2;
  if (pos > buf.length) throw new GzipMemberError('truncated gzip header', offset);
  return pos;
}

/**
 * Decompresses the member at `offset`, passing each decompressed chunk to `sink` (which may be
 * async). Throws GzipMemberError when the member is truncated or corrupt.
 */
export async function readMember(
  fh: FileHandle,
  offset: number,
  fileSize: number,
  sink: (chunk: Buffer) => void | Promise<void>,
  options: { maxSize?: number } = {},
): Promise<MemberInfo> {
  const maxSize = options.maxSize ?? Number.MAX_SAFE_INTEGER;
  const first = Buffer.alloc(Math.min(READ_CHUNK, fileSize - offset));
  await fh.read(first, 0, first.length, offset);
  const hlen = gzipHeaderLength(first, offset);
  const inflate = zlib.createInflateRaw();
  let crc = 0;
  let size = 0;
  let ended = false;
  let failure: Error | undefined;
  const pending: Buffer[] = [];
  inflate.on('data', (chunk: Buffer) => pending.push(chunk));
  inflate.on('end', () => (ended = true));
  inflate.on('error', (err) => (failure = err));

  const drain = async (): Promise<void> => {
    while (pending.length > 0) {
      const chunk = pending.shift()!;
      crc = zlib.crc32(chunk, crc);
      size += chunk.length;
      if (size > maxSize) throw new GzipMemberError(`member decompresses to more than ${maxSize} bytes`, offset);
      await sink(chunk);
    }
  };
  const write = (buf: Buffer): Promise<void> =>
    new Promise((resolve) => {
      if (inflate.write(buf)) setImmediate(resolve);
      else inflate.once('drain', resolve);
    });

  let pos = offset + hlen;
  let firstBody: Buffer | undefined = first.subarray(hlen);
  while (!ended && !failure) {
    let buf: Buffer;
    if (firstBody) {
      buf = firstBody;
      firstBody = undefined;
      pos = offset + first.length;
    } else {
      if (pos >= fileSize) break;
      buf = Buffer.alloc(Math.min(READ_CHUNK, fileSize - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      buf = buf.subarray(0, bytesRead);
      pos += bytesRead;
    }
    if (buf.length > 0) await write(buf);
    await drain();
  }
  if (!ended && !failure) {
    // End of file before the deflate stream ended: flush what is left and see.
    await new Promise<void>((resolve) => {
      inflate.end();
      inflate.once('end', resolve);
      inflate.once('error', resolve);
      inflate.once('close', resolve);
    });
    await drain();
    if (!ended || failure) throw new GzipMemberError('truncated gzip member', offset);
  }
  if (failure) throw new GzipMemberError(`corrupt deflate data: ${failure.message}`, offset);
  await drain();
  const consumed = inflate.bytesWritten;
  inflate.destroy();
  const trailerAt = offset + hlen + consumed;
  const trailer = Buffer.alloc(8);
  const { bytesRead } = await fh.read(trailer, 0, 8, trailerAt);
  if (bytesRead < 8) throw new GzipMemberError('truncated gzip trailer', offset);
  if (trailer.readUInt32LE(0) !== crc >>> 0) throw new GzipMemberError('CRC mismatch', offset);
  if (trailer.readUInt32LE(4) !== size % 2 ** 32) throw new GzipMemberError('size mismatch', offset);
  return { offset, length: hlen + consumed + 8, size };
}

/** Iterates the members of a file from `start`, stopping at the first bad one (reported via onError). */
export async function* scanMembers(
  path: string,
  options: { start?: number; sink?: (m: { offset: number }) => (chunk: Buffer) => void | Promise<void> } = {},
): AsyncGenerator<MemberInfo> {
  const fh = await open(path, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    let offset = options.start ?? 0;
    while (offset < fileSize) {
      const sink = options.sink?.({ offset }) ?? (() => {});
      const info = await readMember(fh, offset, fileSize, sink);
      yield info;
      offset += info.length;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Fast path for small members: inflates the member at the start of `buf` in one synchronous call.
 * Returns undefined when the member does not end inside `buf` or decompresses to more than
 * `maxSize` bytes (the caller then streams it with readMember); throws GzipMemberError when it is
 * corrupt (bad header, bad deflate data, CRC or size mismatch).
 */
export function inflateMemberInBuffer(buf: Buffer, offset: number, maxSize: number): { data: Buffer; length: number } | undefined {
  let hlen: number;
  try {
    hlen = gzipHeaderLength(buf, offset);
  } catch (err) {
    if (err instanceof GzipMemberError && err.message.startsWith('truncated')) return undefined;
    throw err;
  }
  let result: { buffer: Buffer; engine: zlib.InflateRaw };
  try {
    result = zlib.inflateRawSync(buf.subarray(hlen), { info: true, maxOutputLength: maxSize }) as unknown as { buffer: Buffer; engine: zlib.InflateRaw };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'Z_BUF_ERROR' || code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw new GzipMemberError(`corrupt deflate data: ${(err as Error).message}`, offset);
  }
  const end = hlen + result.engine.bytesWritten;
  if (end + 8 > buf.length) return undefined;
  const data = result.buffer;
  if (buf.readUInt32LE(end) !== zlib.crc32(data) >>> 0) throw new GzipMemberError('CRC mismatch', offset);
  if (buf.readUInt32LE(end + 4) !== data.length % 2 ** 32) throw new GzipMemberError('size mismatch', offset);
  return { data, length: end + 8 };
}
