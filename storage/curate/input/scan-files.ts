import { once } from 'node:events';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import zlib from 'node:zlib';
import { hashRegularFile } from '../../warc/input-file.js';
import type { RawRecordSink, WarcRecordInfo } from '../../warc/warc-item.js';
import { detectWarcFormat, readWarc, type ReadRecord } from '../../warc/warc-reader.js';

/**
 * Reading one input file for `merge` and `verify` (issue 25): the part that inflates and hashes,
 * and so the part that runs on every core. Each scan is a stream of events in file order; the
 * caller (merge.ts, verify.ts) consumes them one file after another, so what it decides and
 * writes does not depend on how many scans ran at once. A scan runs in-process (`--jobs 1`) or
 * on a worker thread (scan-pool.ts); the events are the same either way.
 */
export type ScanTask =
  | { kind: 'hash'; path: string }
  /** `trust`: believe declared sha1 digests (the file's sha256 already matched its shard.json); `spool`: re-compress records of plain and whole-gzip files. */
  | { kind: 'merge'; path: string; trust: boolean; spool: boolean }
  /** `hash`: also sha256 the file after reading it (for the shard.json check). */
  | { kind: 'verify'; path: string; hash: boolean };

/** A re-compressed record: its member in memory or in a spill file, freed by `dispose`. */
export interface Spooled {
  readonly data: Buffer | { path: string; offset: number; length: number };
  dispose(): Promise<void>;
}

/** What verify needs of a record: its place and identity, and what is wrong with it. */
export interface VerifyRecord {
  offset: number;
  length: number;
  type: string;
  recordId: string | undefined;
  targetUri: string | undefined;
  date: string | undefined;
  problems: string[];
}

export type ScanEvent =
  | { k: 'defect'; file: string; offset: number; what: string }
  | { k: 'record'; rec: ReadRecord; spool?: Spooled }
  | { k: 'vrecord'; rec: VerifyRecord }
  | { k: 'progress'; offset: number }
  | { k: 'hashed'; sha256: string; size: number }
  /** The file could not be read at all (swapped for a FIFO, an I/O error); `code` as thrown. */
  | { k: 'unreadable'; code: string | undefined; message: string; stage?: 'hash' };

function unreadable(err: unknown, stage?: 'hash'): ScanEvent {
  const e: ScanEvent = { k: 'unreadable', code: (err as { code?: string }).code, message: (err as Error).message };
  return stage ? { ...e, stage } : e;
}

/** The events of one task, in file order. */
export async function* scanFile(task: ScanTask): AsyncGenerator<ScanEvent> {
  if (task.kind === 'hash') {
    try {
      yield { k: 'hashed', ...(await hashRegularFile(task.path)) };
    } catch (err) {
      yield unreadable(err);
    }
    return;
  }
  if (task.kind === 'verify') {
    yield* scanVerify(task.path, task.hash);
    return;
  }
  yield* scanMerge(task.path, task.trust, task.spool);
}

async function* scanVerify(path: string, hash: boolean): AsyncGenerator<ScanEvent> {
  let n = 0;
  try {
    for await (const item of readWarc(path)) {
      if (item.kind === 'defect') {
        yield { k: 'defect', file: item.file, offset: item.offset, what: item.what };
        continue;
      }
      const { offset, length, type, recordId, targetUri, date, problems } = item;
      yield { k: 'vrecord', rec: { offset, length, type, recordId, targetUri, date, problems } };
      if (++n % 10000 === 0) yield { k: 'progress', offset };
    }
  } catch (err) {
    yield unreadable(err);
  }
  if (!hash) return;
  try {
    yield { k: 'hashed', ...(await hashRegularFile(path)) };
  } catch (err) {
    yield unreadable(err, 'hash');
  }
}

async function* scanMerge(path: string, trust: boolean, spool: boolean): AsyncGenerator<ScanEvent> {
  const spools = new Map<number, RecordSpool>();
  let n = 0;
  try {
    const format = await detectWarcFormat(path);
    const rawSink =
      spool && (format === 'plain' || format === 'gzip-whole')
        ? (at: number) => {
            const s = new RecordSpool();
            spools.set(at, s);
            return s;
          }
        : undefined;
    for await (const item of readWarc(path, { format, rawSink, trustSha1Digests: trust })) {
      if (item.kind === 'defect') {
        yield { k: 'defect', file: item.file, offset: item.offset, what: item.what };
        continue;
      }
      const s = spools.get(item.streamOffset);
      spools.delete(item.streamOffset);
      yield s ? { k: 'record', rec: item, spool: s } : { k: 'record', rec: item };
      if (++n % 5000 === 0) yield { k: 'progress', offset: item.offset };
    }
  } catch (err) {
    yield unreadable(err);
  } finally {
    for (const s of spools.values()) await s.dispose();
  }
}

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

  /** Closes the spill file but leaves it for whoever now holds `data` (a worker handing it to the main thread). */
  async release(): Promise<void> {
    await this.#fh?.close().catch(() => undefined);
    this.#fh = undefined;
  }
}
