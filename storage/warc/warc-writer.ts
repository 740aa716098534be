import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { StorageError } from '../../config/errors.js';
import type { BlockPart, Capture } from './capture.js';
import { blockLength, captureRecords, extraRecord, recordHeadOf, warcinfoRecord, type RecordSpec, type RevisitTarget } from './warc-build.js';
import { appendBuffer, appendParts, appendStreamedMember, byteLength, syncDir, type OpenWarcFile } from './warc-append.js';
import { compress, readSmallBody, storedGzipMemberParts } from './warc-compress.js';
import { newRecordId, RECORD_END, type WarcType } from './warc-record.js';

export type { BlockPart } from './capture.js';
export type { RevisitTarget } from './warc-build.js';
export { syncDir } from './warc-append.js';

/** Where a record landed. `file` is always the final name (without `.open`). */
export interface WrittenRecord {
  file: string;
  offset: number;
  length: number;
  recordId: string;
  type: WarcType;
}

export interface ClosedWarc {
  name: string;
  size: number;
  sha256: string;
  records: number;
}

export interface WarcWriterOptions {
  /** The directory the WARCs go into (a shard's `warcs/`). */
  dir: string;
  /** File name prefix, normally the profile name. */
  prefix: string;
  /** The node name, the last part of each file name. */
  node: string;
  /** Rotate after a file reaches this size. */
  maxFileBytes: number;
  /**
   * Several writers on one directory number their files apart: this one uses serials
   * ≡ offset (mod step). Default { offset: 0, step: 1 }.
   */
  serialStep?: { offset: number; step: number };
  /** Fields of each file's warcinfo record. */
  warcinfo: Record<string, string | undefined>;
  onFileClosed?: (warc: ClosedWarc) => void | Promise<void>;
  onFileOpened?: (name: string) => void | Promise<void>;
  gzipLevel?: number;
  /** Bodies up to this size are compressed in one call on the thread pool; larger ones stream. */
  inMemoryLimitBytes?: number;
  now?: () => Date;
  /** Makes each record's WARC-Record-ID. Default a random `<urn:uuid:…>` (tests inject fixed ones). */
  newRecordId?: () => string;
}

interface PreparedRecord {
  type: WarcType;
  recordId: string;
  head: Buffer;
  block: BlockPart[];
  level: number;
  /** The whole record as one gzip member (its bytes in order), when it was small enough to compress up front. */
  gz?: Buffer[];
}

function timestamp(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/**
 * One serialised writer per shard (ARCHITECTURE.md "WARC files"): every record is its own gzip member, files
 * are written as `NAME.warc.gz.open` and renamed when closed, rotation by size, and a running
 * sha256 per file so closing needs no re-read. Writes are queued; each returns a promise that
 * rejects on a storage failure (never logged and swallowed). `flush()` makes everything written
 * so far durable (fsync); an ID may be marked final only after a flush that covers its records.
 */
export class WarcWriter {
  readonly #opts: Required<Omit<WarcWriterOptions, 'onFileClosed' | 'onFileOpened' | 'serialStep'>> & Pick<WarcWriterOptions, 'onFileClosed' | 'onFileOpened' | 'serialStep'>;
  #file: OpenWarcFile | undefined;
  #serial = -1;
  #queue: Promise<unknown> = Promise.resolve();
  #broken: Error | undefined;
  #closed = false;
  #bytesWritten = 0;
  #recordsWritten = 0;

  constructor(options: WarcWriterOptions) {
    this.#opts = { gzipLevel: 6, inMemoryLimitBytes: 1024 * 1024, now: () => new Date(), newRecordId, ...options };
  }

  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  get recordsWritten(): number {
    return this.#recordsWritten;
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      if (this.#broken) throw this.#broken;
      if (this.#closed) throw new StorageError('the WARC writer is closed');
      return task();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #nextSerial(): Promise<number> {
    const { offset, step } = this.#opts.serialStep ?? { offset: 0, step: 1 };
    if (this.#serial < 0) {
      let max = -1;
      await mkdir(this.#opts.dir, { recursive: true });
      for (const f of await readdir(this.#opts.dir)) {
        const m = /-(\d{5,})-[^-]+\.warc\.gz(\.open)?$/.exec(f);
        if (m) max = Math.max(max, Number(m[1]));
      }
      // The first serial above every file already there that is ≡ offset (mod step).
      this.#serial = max + 1 + ((((offset - (max + 1)) % step) + step) % step);
      return this.#serial;
    }
    this.#serial += step;
    return this.#serial;
  }

  async #openFile(): Promise<OpenWarcFile> {
    if (this.#file) return this.#file;
    const serial = await this.#nextSerial();
    const name = `${this.#opts.prefix}-${timestamp(this.#opts.now())}-${String(serial).padStart(5, '0')}-${this.#opts.node}.warc.gz`;
    const path = join(this.#opts.dir, `${name}.open`);
    let fh: FileHandle;
    try {
      fh = await open(path, 'wx');
    } catch (err) {
      throw new StorageError(`cannot create ${path}: ${(err as Error).message}`, { code: 'E_WARC_OPEN', cause: err });
    }
    const file: OpenWarcFile = { name, path, fh, size: 0, records: 0, sha256: createHash('sha256') };
    this.#file = file;
    const info = warcinfoRecord({ recordId: this.#opts.newRecordId(), date: this.#opts.now(), filename: name, fields: this.#opts.warcinfo });
    await this.#write(file, [await this.#prepare(info)]);
    await this.#opts.onFileOpened?.(name);
    return file;
  }

  /**
   * Compresses one record into its gzip member. Bodies up to `inMemoryLimitBytes` are compressed here, on the thread pool
   * and outside the writer's queue, so many records compress in parallel while appends stay
   * serialised; larger bodies are streamed through gzip when their turn comes.
   */
  async #prepare(spec: RecordSpec): Promise<PreparedRecord> {
    const { type, recordId, block } = spec;
    const level = spec.stored ? 0 : this.#opts.gzipLevel;
    const head = recordHeadOf(spec);
    // A large body streams through gzip, or from its spool file; one already in memory that is
    // stored (a medium) becomes block headers around views of it: no copy, no streaming.
    const inMemory = block.every((p) => Buffer.isBuffer(p) || p.kind === 'buffer');
    if (blockLength(block) > this.#opts.inMemoryLimitBytes && !(level === 0 && inMemory)) return { type, recordId, head, block, level };
    const parts: Buffer[] = [head];
    for (const p of block) parts.push(Buffer.isBuffer(p) ? p : await readSmallBody(p));
    parts.push(RECORD_END);
    // Stored members point into the body instead of copying it; deflate needs the record in one piece.
    return { type, recordId, head, block, level, gz: level === 0 ? storedGzipMemberParts(parts) : [await compress(Buffer.concat(parts), level)] };
  }

  /** Appends prepared records (each its own gzip member); on failure, cuts the file back to its last good record. */
  async #write(file: OpenWarcFile, records: PreparedRecord[]): Promise<WrittenRecord[]> {
    const start = file.size;
    const out: WrittenRecord[] = [];
    try {
      if (records.every((r) => r.gz)) {
        let offset = start;
        for (const r of records) {
          const length = byteLength(r.gz!);
          out.push({ file: file.name, offset, length, recordId: r.recordId, type: r.type });
          offset += length;
        }
        // One writev for the batch: a response and its request are one system call, not two or a copy.
        appendParts(file, records.flatMap((r) => r.gz!));
      } else {
        for (const r of records) {
          const offset = file.size;
          if (r.gz) appendParts(file, r.gz);
          else await appendStreamedMember(file, r.head, r.block, r.level);
          out.push({ file: file.name, offset, length: file.size - offset, recordId: r.recordId, type: r.type });
        }
      }
    } catch (err) {
      await file.fh.truncate(start).catch(() => undefined);
      file.size = start;
      const code = (err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'E_DISK_FULL' : 'E_WARC_WRITE';
      const what = code === 'E_DISK_FULL' ? 'disk full: free space and run the same command again to resume' : (err as Error).message;
      const error = new StorageError(`writing ${records.map((r) => r.type).join('+')} to ${file.path} failed: ${what}`, { code, cause: err });
      this.#broken = error;
      throw error;
    }
    file.records += records.length;
    this.#recordsWritten += records.length;
    this.#bytesWritten += file.size - start;
    return out;
  }

  async #rotateIfFull(): Promise<void> {
    if (this.#file && this.#file.size >= this.#opts.maxFileBytes) await this.#closeFile();
  }

  async #closeFile(): Promise<void> {
    const file = this.#file;
    if (!file) return;
    this.#file = undefined;
    try {
      await file.fh.sync();
    } catch (err) {
      // Not renamed: the file stays `.open` and the next run repairs it. The writer stays failed
      // (issue 21 §5): records of this file not yet flushed are not durable, and a later flush of
      // another file must not make IDs final on their behalf.
      await file.fh.close().catch(() => undefined);
      this.#broken = new StorageError(`fsync of ${file.path} failed: ${(err as Error).message}`, { code: 'E_WARC_SYNC', cause: err });
      throw this.#broken;
    }
    await file.fh.close();
    const finalPath = join(this.#opts.dir, file.name);
    await rename(file.path, finalPath);
    await syncDir(this.#opts.dir);
    await this.#opts.onFileClosed?.({ name: file.name, size: file.size, sha256: file.sha256.digest('hex'), records: file.records });
  }

  /**
   * Writes a capture as a response (or a revisit of `revisitOf`: the caller knows what the shard
   * holds) and its request, in one file, one after the other.
   */
  async writeCapture(capture: Capture, options: { revisitOf?: RevisitTarget } = {}): Promise<{ request: WrittenRecord; response: WrittenRecord; revisitOf?: RevisitTarget }> {
    if (this.#broken) throw this.#broken;
    const { revisitOf } = options;
    const specs = captureRecords(capture, { response: this.#opts.newRecordId(), request: this.#opts.newRecordId() }, revisitOf);
    const prepared = await Promise.all(specs.map((spec) => this.#prepare(spec)));
    return this.#enqueue(async () => {
      const file = await this.#openFile();
      const [response, request] = (await this.#write(file, prepared)) as [WrittenRecord, WrittenRecord];
      await this.#rotateIfFull();
      return revisitOf ? { request, response, revisitOf } : { request, response };
    });
  }

  /** A `resource` (e.g. a screenshot) or `metadata` record (e.g. what extraction found). */
  async writeRecord(record: { type: 'resource' | 'metadata'; url: string; contentType: string; data: Buffer; concurrentTo?: string; date?: Date }): Promise<WrittenRecord> {
    const prepared = await this.#prepare(extraRecord({ ...record, recordId: this.#opts.newRecordId(), date: record.date ?? this.#opts.now() }));
    return this.#enqueue(async () => {
      const file = await this.#openFile();
      const [written] = await this.#write(file, [prepared]);
      await this.#rotateIfFull();
      return written!;
    });
  }

  /**
   * Appends records that are already complete gzip members (copied byte for byte from another
   * WARC: merge's fast path, no re-compression). A member is a buffer or a byte range of a file.
   * The batch lands in one file, consecutive buffers in one write; rotation is checked after it.
   */
  writeMembers(members: { data: Buffer | { path: string; offset: number; length: number }; recordId: string; type: string }[]): Promise<WrittenRecord[]> {
    return this.#enqueue(async () => {
      const file = await this.#openFile();
      const out: WrittenRecord[] = [];
      const start = file.size;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flushPending = async (): Promise<void> => {
        if (pendingBytes === 0) return;
        appendBuffer(file, pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes));
        pending = [];
        pendingBytes = 0;
      };
      // Byte ranges of input files: one handle per file for the batch, and a run of ranges that
      // follow each other in one file (the records a merge keeps from it) is copied in one read.
      const handles = new Map<string, FileHandle>();
      const source = async (path: string): Promise<FileHandle> => {
        let fh = handles.get(path);
        if (!fh) handles.set(path, (fh = await open(path, 'r')));
        return fh;
      };
      try {
        for (let i = 0; i < members.length; ) {
          const m = members[i]!;
          if (Buffer.isBuffer(m.data)) {
            out.push({ file: file.name, offset: file.size + pendingBytes, length: m.data.length, recordId: m.recordId, type: m.type as WarcType });
            pending.push(m.data);
            pendingBytes += m.data.length;
            file.records++;
            this.#recordsWritten++;
            if (pendingBytes >= 8 * 1024 * 1024) await flushPending();
            i++;
            continue;
          }
          await flushPending();
          const { path, offset: from } = m.data;
          let to = from + m.data.length;
          let j = i + 1;
          for (; j < members.length; j++) {
            const d = members[j]!.data;
            if (Buffer.isBuffer(d) || d.path !== path || d.offset !== to) break;
            to += d.length;
          }
          const runStart = file.size;
          const src = await source(path);
          for (let done = 0; done < to - from; ) {
            const buf = Buffer.allocUnsafe(Math.min(8 * 1024 * 1024, to - from - done));
            const { bytesRead } = await src.read(buf, 0, buf.length, from + done);
            if (bytesRead === 0) throw new StorageError(`${path} ended before offset ${to}`);
            appendBuffer(file, buf.subarray(0, bytesRead));
            done += bytesRead;
          }
          for (; i < j; i++) {
            const r = members[i]!;
            const d = r.data as { offset: number; length: number };
            out.push({ file: file.name, offset: runStart + (d.offset - from), length: d.length, recordId: r.recordId, type: r.type as WarcType });
            file.records++;
            this.#recordsWritten++;
          }
        }
        await flushPending();
        this.#bytesWritten += file.size - start;
      } catch (err) {
        for (const fh of handles.values()) await fh.close().catch(() => undefined);
        handles.clear();
        await file.fh.truncate(start).catch(() => undefined);
        file.size = start;
        const error = new StorageError(`copying records to ${file.path} failed: ${(err as Error).message}`, { code: (err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'E_DISK_FULL' : 'E_WARC_WRITE', cause: err });
        this.#broken = error;
        throw error;
      }
      for (const fh of handles.values()) await fh.close();
      await this.#rotateIfFull();
      return out;
    });
  }

  /**
   * Makes every record whose write has resolved durable. The fsync runs beside the queue, not in
   * it, so appends go on meanwhile; a file closed in the meantime was synced by its close.
   */
  async flush(): Promise<void> {
    if (this.#broken) throw this.#broken;
    const file = this.#file;
    if (!file) return;
    try {
      await file.fh.sync();
    } catch (err) {
      if (this.#file === file) {
        // Linux reports a failed writeback once and may drop the pages: a later fsync "succeeds"
        // without them. So the writer stays failed; the next run repairs the `.open` file.
        this.#broken ??= new StorageError(`fsync of ${file.path} failed: ${(err as Error).message}`, { code: 'E_WARC_SYNC', cause: err });
        throw this.#broken;
      }
      // Rotated meanwhile: the close (queued) fsyncs the file before renaming it; wait for it.
      await this.#queue;
      if (this.#broken) throw this.#broken;
    }
  }

  /** Flushes, closes and renames the open file. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#enqueue(() => this.#closeFile());
    } catch (err) {
      // A broken writer (disk full, failed fsync) cannot finish its file: let go of it as it is.
      await this.abandon();
      throw err;
    }
    this.#closed = true;
  }

  /**
   * Lets go of the open file as it is, without fsync or rename: what a crash leaves behind (the
   * next run's repair cuts any torn tail and renames it). Writes after this fail.
   */
  async abandon(): Promise<void> {
    this.#closed = true;
    await this.#queue;
    const file = this.#file;
    this.#file = undefined;
    await file?.fh.close().catch(() => undefined);
  }
}
