import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { StorageError } from '../../config/errors.js';

/**
 * A ZIP writer for WACZ (issue 15): every entry is STORED (method 0) and its local header carries
 * the real CRC-32 and sizes — no data descriptor (general-purpose bit 3 clear). Streaming readers
 * that refuse a stored entry with a data descriptor (Java's `ZipInputStream`: "only DEFLATED
 * entries can have EXT descriptor") open the file, as do central-directory readers. yazl cannot
 * do this for streamed entries (it knows the CRC only after the data), so this writer writes each
 * local header, streams the data once (hashing CRC-32 and sha256 on the way), then patches the
 * CRC in place: one read of each input, nothing held in memory. ZIP64 fields are used where a size,
 * an offset or the entry count needs them.
 */
export interface ZipEntryResult {
  name: string;
  bytes: number;
  sha256: string;
}

interface CentralEntry {
  name: Buffer;
  crc: number;
  size: number;
  offset: number;
  zip64: boolean;
}

const U32 = 0xffffffff;
const FLAG_UTF8 = 1 << 11;

function dosDateTime(d: Date): { time: number; date: number } {
  const year = Math.min(Math.max(d.getUTCFullYear(), 1980), 2107);
  return {
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2),
    date: ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}

export class ZipWriter {
  readonly #fh: FileHandle;
  readonly #path: string;
  readonly #dos: { time: number; date: number };
  #pos = 0;
  #entries: CentralEntry[] = [];
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #pendingAt = 0;

  private constructor(fh: FileHandle, path: string, mtime: Date) {
    this.#fh = fh;
    this.#path = path;
    this.#dos = dosDateTime(mtime);
  }

  static async create(path: string, mtime = new Date()): Promise<ZipWriter> {
    try {
      return new ZipWriter(await open(path, 'w'), path, mtime);
    } catch (err) {
      throw new StorageError(`cannot create ${path}: ${(err as Error).message}`, { code: 'E_ZIP_OPEN', cause: err });
    }
  }

  async #writeAt(data: Buffer, at: number): Promise<void> {
    let done = 0;
    while (done < data.length) done += (await this.#fh.write(data, done, data.length - done, at + done)).bytesWritten;
  }

  /** Appends at the end; small pieces (headers, small entries) are gathered into writes of ~1 MiB. */
  async #write(data: Buffer): Promise<void> {
    if (this.#pendingBytes === 0) this.#pendingAt = this.#pos;
    this.#pending.push(data);
    this.#pendingBytes += data.length;
    this.#pos += data.length;
    if (this.#pendingBytes >= 1024 * 1024) await this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#pendingBytes === 0) return;
    const data = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    await this.#writeAt(data, this.#pendingAt);
  }

  #localHeader(name: Buffer, size: number, crc: number, zip64: boolean): Buffer {
    const extra = zip64 ? Buffer.alloc(20) : Buffer.alloc(0);
    if (zip64) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(16, 2);
      extra.writeBigUInt64LE(BigInt(size), 4);
      extra.writeBigUInt64LE(BigInt(size), 12);
    }
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(zip64 ? 45 : 20, 4);
    h.writeUInt16LE(FLAG_UTF8, 6);
    h.writeUInt16LE(0, 8); // stored
    h.writeUInt16LE(this.#dos.time, 10);
    h.writeUInt16LE(this.#dos.date, 12);
    h.writeUInt32LE(crc, 14);
    h.writeUInt32LE(zip64 ? U32 : size, 18);
    h.writeUInt32LE(zip64 ? U32 : size, 22);
    h.writeUInt16LE(name.length, 26);
    h.writeUInt16LE(extra.length, 28);
    return Buffer.concat([h, name, extra]);
  }

  /** Adds a stored entry whose bytes come from `chunks` (exactly `size` bytes). */
  async #add(entryName: string, size: number, chunks: AsyncIterable<Buffer>): Promise<ZipEntryResult> {
    const name = Buffer.from(entryName, 'utf8');
    const zip64 = size >= U32;
    const offset = this.#pos;
    const header = this.#localHeader(name, size, 0, zip64);
    await this.#write(header);
    let crc = 0;
    let bytes = 0;
    const sha = createHash('sha256');
    for await (const chunk of chunks) {
      crc = crc32(chunk, crc);
      sha.update(chunk);
      bytes += chunk.length;
      await this.#write(chunk);
    }
    if (bytes !== size) throw new StorageError(`${entryName}: expected ${size} bytes, read ${bytes} (did the file change during export?)`, { code: 'E_ZIP_SIZE' });
    const crcBuf = Buffer.alloc(4);
    crcBuf.writeUInt32LE(crc >>> 0, 0);
    await this.#flush();
    await this.#writeAt(crcBuf, offset + 14);
    this.#entries.push({ name, crc: crc >>> 0, size, offset, zip64: zip64 || offset >= U32 });
    return { name: entryName, bytes, sha256: sha.digest('hex') };
  }

  async addFile(entryName: string, src: string): Promise<ZipEntryResult> {
    const { size } = await stat(src);
    return this.#add(entryName, size, createReadStream(src, { highWaterMark: 1024 * 1024 }));
  }

  /** Adds a stored entry from memory: header and data in one write, CRC known up front. */
  async addBuffer(entryName: string, data: Buffer): Promise<ZipEntryResult> {
    const name = Buffer.from(entryName, 'utf8');
    const crc = crc32(data) >>> 0;
    const offset = this.#pos;
    await this.#write(Buffer.concat([this.#localHeader(name, data.length, crc, data.length >= U32), data]));
    this.#entries.push({ name, crc, size: data.length, offset, zip64: data.length >= U32 || offset >= U32 });
    return { name: entryName, bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
  }

  /** Writes the central directory (and ZIP64 end records where needed) and closes the file. */
  async close(): Promise<{ path: string; bytes: number }> {
    const cdStart = this.#pos;
    for (const e of this.#entries) {
      const fields: bigint[] = [];
      if (e.size >= U32) fields.push(BigInt(e.size), BigInt(e.size));
      if (e.offset >= U32) fields.push(BigInt(e.offset));
      const extra = Buffer.alloc(fields.length > 0 ? 4 + 8 * fields.length : 0);
      if (fields.length > 0) {
        extra.writeUInt16LE(0x0001, 0);
        extra.writeUInt16LE(8 * fields.length, 2);
        fields.forEach((f, i) => extra.writeBigUInt64LE(f, 4 + 8 * i));
      }
      const h = Buffer.alloc(46);
      h.writeUInt32LE(0x02014b50, 0);
      h.writeUInt16LE((3 << 8) | 45, 4); // made by: unix, 4.5
      h.writeUInt16LE(e.zip64 ? 45 : 20, 6);
      h.writeUInt16LE(FLAG_UTF8, 8);
      h.writeUInt16LE(0, 10);
      h.writeUInt16LE(this.#dos.time, 12);
      h.writeUInt16LE(this.#dos.date, 14);
      h.writeUInt32LE(e.crc, 16);
      h.writeUInt32LE(e.size >= U32 ? U32 : e.size, 20);
      h.writeUInt32LE(e.size >= U32 ? U32 : e.size, 24);
      h.writeUInt16LE(e.name.length, 28);
      h.writeUInt16LE(extra.length, 30);
      h.writeUInt32LE((0o100644 << 16) >>> 0, 38);
      h.writeUInt32LE(e.offset >= U32 ? U32 : e.offset, 42);
      await this.#write(Buffer.concat([h, e.name, extra]));
    }
    const cdSize = this.#pos - cdStart;
    const count = this.#entries.length;
    if (count >= 0xffff || cdStart >= U32 || cdSize >= U32) {
      const z = Buffer.alloc(56 + 20);
      const at = this.#pos;
      z.writeUInt32LE(0x06064b50, 0);
      z.writeBigUInt64LE(44n, 4);
      z.writeUInt16LE((3 << 8) | 45, 12);
      z.writeUInt16LE(45, 14);
      z.writeBigUInt64LE(BigInt(count), 24);
      z.writeBigUInt64LE(BigInt(count), 32);
      z.writeBigUInt64LE(BigInt(cdSize), 40);
      z.writeBigUInt64LE(BigInt(cdStart), 48);
      z.writeUInt32LE(0x07064b50, 56);
      z.writeBigUInt64LE(BigInt(at), 64);
      z.writeUInt32LE(1, 72);
      await this.#write(z);
    }
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(Math.min(count, 0xffff), 8);
    end.writeUInt16LE(Math.min(count, 0xffff), 10);
    end.writeUInt32LE(Math.min(cdSize, U32), 12);
    end.writeUInt32LE(Math.min(cdStart, U32), 16);
    await this.#write(end);
    await this.#flush();
    await this.#fh.sync();
    await this.#fh.close();
    return { path: this.#path, bytes: this.#pos };
  }

  /** Closes without finishing (the caller removes the file). */
  async abort(): Promise<void> {
    await this.#fh.close().catch(() => undefined);
  }
}
