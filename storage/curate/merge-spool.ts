import { once } from 'node:events';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import zlib from 'node:zlib';
import type { RawRecordSink, WarcRecordInfo } from '../warc/warc-item.js';

/**
 * Re-compresses one record that is not its own gzip member (from a plain `.warc` or a
 * whole-file-gzip WARC) into a single member, as the reader passes its bytes. Up to
 * `memoryBytes` of compressed output stays in memory; beyond that it spills to a temp file, so a
 * 1 GB record costs a temp file, not 1 GB of memory.
 */
export class RecordSpool implements RawRecordSink {
  readonly #gz = zlib.createGzip({ level: 6 });
  #chunks: Buffer[] = [];
  #bytes = 0;
  #fh: FileHandle | undefined;
  #path: string | undefined;
  #fileBytes = 0;
  #pendingSpill: Promise<void> = Promise.resolve();
  record: WarcRecordInfo | undefined;

  constructor(private readonly memoryBytes = 8 * 1024 * 1024, private readonly spillDir = tmpdir()) {
    this.#gz.on('data', (c: Buffer) => {
      this.#chunks.push(c);
      this.#bytes += c.length;
    });
  }

  async #spill(): Promise<void> {
    if (!this.#fh) {
      this.#path = join(this.spillDir, `lifeboat-spool-${randomUUID()}.gz`);
      this.#fh = await open(this.#path, 'w+');
    }
    const data = Buffer.concat(this.#chunks, this.#bytes);
    this.#chunks = [];
    this.#bytes = 0;
    await this.#fh.write(data, 0, data.length, this.#fileBytes);
    this.#fileBytes += data.length;
  }

  async write(chunk: Buffer): Promise<void> {
    if (!this.#gz.write(chunk)) await once(this.#gz, 'drain');
    if (this.#bytes > this.memoryBytes) await this.#spill();
  }

  async end(record: WarcRecordInfo): Promise<void> {
    this.record = record;
    const ended = once(this.#gz, 'end');
    this.#gz.end();
    await ended;
    if (this.#fh) await this.#spill();
    await this.#pendingSpill;
  }

  async abort(): Promise<void> {
    this.#gz.destroy();
    await this.dispose();
  }

  /** The compressed member: a buffer, or a byte range of the spill file. */
  get data(): Buffer | { path: string; offset: number; length: number } {
    if (this.#path) return { path: this.#path, offset: 0, length: this.#fileBytes };
    return Buffer.concat(this.#chunks, this.#bytes);
  }

  async dispose(): Promise<void> {
    await this.#fh?.close().catch(() => undefined);
    this.#fh = undefined;
    if (this.#path) await rm(this.#path, { force: true });
  }
}
