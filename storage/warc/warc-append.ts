import type { Hash } from 'node:crypto';
import { writeSync, writevSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import zlib from 'node:zlib';
import type { BlockPart } from './capture.js';
import { blockChunks, writeStoredMember } from './warc-compress.js';

/**
 * Appending to the WARC file being written: every byte goes in at the file's end, in order, and
 * into its running sha256 (so closing needs no re-read). The rolling writer (warc-writer.ts)
 * decides what to append and when; these functions only put bytes on disk.
 */
export interface OpenWarcFile {
  name: string;
  path: string;
  fh: FileHandle;
  size: number;
  records: number;
  sha256: Hash;
}

export function byteLength(parts: Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** iovecs per writev call (Linux IOV_MAX is 1024). */
const IOV_BATCH = 1024;

/**
 * Appends with a synchronous write: copying into the page cache costs ~10 us, a quarter of the
 * CPU of an async write's thread-pool round trip (measured here); fsync stays asynchronous.
 */
export function appendBuffer(file: OpenWarcFile, data: Buffer): void {
  let done = 0;
  while (done < data.length) done += writeSync(file.fh.fd, data, done, data.length - done, file.size + done);
  file.sha256.update(data);
  file.size += data.length;
}

/** Appends buffers in order with writev (a short write is finished with plain writes), hashing each. */
export function appendParts(file: OpenWarcFile, parts: Buffer[]): void {
  for (let i = 0; i < parts.length; i += IOV_BATCH) {
    const batch = parts.length <= IOV_BATCH ? parts : parts.slice(i, i + IOV_BATCH);
    let done = writevSync(file.fh.fd, batch, file.size);
    for (const b of batch) {
      file.sha256.update(b);
      // Only after a short write: the rest of this buffer (or all of it), where it belongs.
      let at = Math.min(b.length, done);
      done -= at;
      while (at < b.length) at += writeSync(file.fh.fd, b, at, b.length - at, file.size + at);
      file.size += b.length;
    }
  }
}

/** Appends one large record as its own gzip member, streamed: through gzip at `level`, or as stored deflate blocks at level 0. */
export async function appendStreamedMember(file: OpenWarcFile, head: Buffer, block: BlockPart[], level: number): Promise<void> {
  if (level === 0) {
    // Already-compressed bytes (warc-compress.ts): stored blocks, no deflate.
    await writeStoredMember(blockChunks(head, block), async (data) => appendBuffer(file, data));
    return;
  }
  const gzip = zlib.createGzip({ level });
  const pumping = (async () => {
    for await (const chunk of gzip) appendBuffer(file, chunk as Buffer);
  })();
  const feed = async (buf: Buffer): Promise<void> => {
    if (!gzip.write(buf)) await new Promise((r) => gzip.once('drain', r));
  };
  try {
    for await (const chunk of blockChunks(head, block)) await feed(chunk);
    gzip.end();
  } catch (err) {
    gzip.destroy(err as Error);
  }
  await pumping;
}

/** fsync of a directory, so a rename in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still ordered after the file's fsync.
  } finally {
    await fh.close();
  }
}
