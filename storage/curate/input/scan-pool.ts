import { rm } from 'node:fs/promises';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { ReadRecord } from '../../warc/warc-reader.js';
import { scanFile, type RecordSpool, type ScanEvent, type ScanTask, type Spooled } from './scan-files.js';

/**
 * Runs scans on up to `jobs` worker threads (`jobs` 1: in-process, lazily, as before issue 25).
 * `submit` returns the task's events as a stream; tasks start in submission order as workers
 * come free, so a caller that submits a phase's files up front and consumes the streams in order
 * keeps every core busy while its own work stays serial. Memory per job is bounded: a worker
 * sends its events in batches and stops after CREDIT_UNITS worth of unconsumed batches until the
 * caller takes one.
 */
export class ScanPool {
  readonly #jobs: number;
  readonly #workers: PoolWorker[] = [];
  readonly #queue: { task: ScanTask; stream: TaskStream }[] = [];
  #closed = false;

  constructor(jobs: number) {
    this.#jobs = Math.max(1, Math.floor(jobs));
  }

  get jobs(): number {
    return this.#jobs;
  }

  submit(task: ScanTask): AsyncIterable<ScanEvent> {
    if (this.#jobs === 1) return scanFile(task);
    const stream = new TaskStream();
    this.#queue.push({ task, stream });
    this.#pump();
    return stream;
  }

  #pump(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      let w = this.#workers.find((x) => !x.busy);
      if (!w && this.#workers.length < this.#jobs) {
        w = new PoolWorker(() => this.#pump());
        this.#workers.push(w);
      }
      if (!w) return;
      const next = this.#queue.shift()!;
      w.run(next.task, next.stream);
    }
  }

  /** Stops the workers; streams not finished end with an error. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const q of this.#queue) q.stream.fail(new Error('scan pool closed'));
    this.#queue.length = 0;
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/** Messages between ScanPool and its worker threads (this module, below). */
export type ToScanWorker = { type: 'task'; id: number; task: ScanTask } | { type: 'ack'; id: number };
export type FromScanWorker =
  | { type: 'events'; events: WireEvent[]; bytes: ArrayBuffer | undefined }
  | { type: 'end' }
  | { type: 'fail'; message: string };

/** An event as it crosses the thread: record bytes ride in the batch's one ArrayBuffer. */
export type WireEvent =
  | Exclude<ScanEvent, { k: 'record' }>
  | { k: 'record'; rec: Omit<ReadRecord, 'member' | 'headers'>; spool?: [number, number] | { path: string; offset: number; length: number } };

/**
 * How far a worker may run ahead of the caller: unconsumed batches, counted in units — a batch of
 * record metadata is one unit (at most BATCH_EVENTS records, well under 1 MB), a batch carrying
 * re-compressed record bytes (plain and whole-gzip inputs) one unit per MiB. So a job holds at
 * most ~64k records' metadata or ~128 MiB of bytes: enough to read a whole typical WARC ahead of
 * the caller (which is what keeps every core busy), and bounded however large the file.
 */
export const CREDIT_UNITS = 128;
const BATCH_EVENTS = 512;
const BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Worker side: runs one task, sends its events in batches, waits for credit. A merge record
 * travels without its bytes (`member`) and header map: the caller copies kept records from the
 * input file by offset and length (WarcWriter reads runs of them in one go), which costs less
 * than shipping every byte across and lets the worker run a whole file ahead.
 */
export async function runScanTask(task: ScanTask, send: (m: FromScanWorker, transfer: ArrayBuffer[]) => void, credit: () => Promise<void>): Promise<void> {
  let events: WireEvent[] = [];
  let parts: Buffer[] = [];
  let bytes = 0;
  const inflight: number[] = [];
  let units = 0;
  const flush = async (): Promise<void> => {
    if (events.length === 0) return;
    let buf: ArrayBuffer | undefined;
    if (bytes > 0) {
      const all = new Uint8Array(new ArrayBuffer(bytes));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      buf = all.buffer;
    }
    send({ type: 'events', events, bytes: buf }, buf ? [buf] : []);
    const u = Math.max(1, Math.ceil(bytes / (1024 * 1024)));
    inflight.push(u);
    units += u;
    events = [];
    parts = [];
    bytes = 0;
    while (units >= CREDIT_UNITS) {
      await credit();
      units -= inflight.shift()!;
    }
  };
  const pack = (b: Buffer): [number, number] => {
    parts.push(b);
    bytes += b.length;
    return [bytes - b.length, b.length];
  };
  for await (const e of scanFile(task)) {
    if (e.k !== 'record') events.push(e);
    else {
      const { member, headers, ...rec } = e.rec;
      void member;
      void headers;
      const wire: Extract<WireEvent, { k: 'record' }> = { k: 'record', rec };
      if (e.spool) {
        const data = e.spool.data;
        wire.spool = Buffer.isBuffer(data) ? pack(data) : data;
        if (Buffer.isBuffer(data)) await e.spool.dispose();
        else await (e.spool as RecordSpool).release();
      }
      events.push(wire);
    }
    if (events.length >= BATCH_EVENTS || bytes >= BATCH_BYTES) await flush();
  }
  await flush();
}

/** Main side: a wire event back into a ScanEvent (views into the batch's buffer; spill files owned here now). */
function fromWire(e: WireEvent, bytes: ArrayBuffer | undefined): ScanEvent {
  if (e.k !== 'record') return e;
  const rec: ReadRecord = { ...e.rec, headers: new Map() };
  if (!e.spool) return { k: 'record', rec };
  const s = e.spool;
  const spool: Spooled = Array.isArray(s)
    ? { data: Buffer.from(bytes!, s[0], s[1]), dispose: async () => undefined }
    : { data: s, dispose: () => rm(s.path, { force: true }) };
  return { k: 'record', rec, spool };
}

/**
 * One task's events as they arrive from its worker; taking a batch gives the worker credit. The
 * worker is free for the next task once this stream has ended and been read to its end (or
 * abandoned: then what still arrives is acknowledged and dropped), so at most `jobs` files are
 * ahead of the caller.
 */
class TaskStream implements AsyncIterable<ScanEvent> {
  readonly #batches: { events: WireEvent[]; bytes: ArrayBuffer | undefined }[] = [];
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #discard = false;
  #done = false;
  ack: () => void = () => undefined;
  onDone: () => void = () => undefined;

  push(events: WireEvent[], bytes: ArrayBuffer | undefined): void {
    if (this.#discard) {
      this.ack();
      return;
    }
    this.#batches.push({ events, bytes });
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
    if (this.#discard) this.#finish();
  }

  fail(err: Error): void {
    this.#error = err;
    this.#ended = true;
    this.#wake?.();
    if (this.#discard) this.#finish();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.onDone();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<ScanEvent> {
    try {
      for (;;) {
        const b = this.#batches.shift();
        if (b) {
          this.ack();
          for (const e of b.events) yield fromWire(e, b.bytes);
          continue;
        }
        if (this.#error) throw this.#error;
        if (this.#ended) return;
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = undefined;
      }
    } finally {
      if (this.#ended) this.#finish();
      else {
        this.#discard = true;
        for (const b of this.#batches.splice(0)) {
          this.ack();
          for (const e of b.events) if (e.k === 'record' && e.spool && !Array.isArray(e.spool)) await rm(e.spool.path, { force: true });
        }
      }
    }
  }
}

/** The worker script is this module (compiled), also when it runs from TypeScript source (tests). */
function workerScript(): URL {
  return import.meta.url.endsWith('.ts') ? new URL('../../../dist/storage/curate/input/scan-pool.js', import.meta.url) : new URL(import.meta.url);
}

let taskIds = 0;

class PoolWorker {
  readonly #w: Worker;
  #stream: TaskStream | undefined;
  busy = false;

  constructor(private readonly onFree: () => void) {
    this.#w = new Worker(workerScript(), { workerData: { lifeboatScanWorker: true } });
    this.#w.on('message', (m: FromScanWorker) => {
      const s = this.#stream;
      if (!s) return;
      if (m.type === 'events') s.push(m.events, m.bytes);
      else {
        this.#stream = undefined;
        if (m.type === 'end') s.end();
        else s.fail(new Error(m.message));
      }
    });
    this.#w.on('error', (err) => {
      const s = this.#stream;
      this.#stream = undefined;
      s?.fail(err);
    });
  }

  run(task: ScanTask, stream: TaskStream): void {
    this.busy = true;
    this.#stream = stream;
    const id = ++taskIds;
    stream.ack = () => this.#w.postMessage({ type: 'ack', id } satisfies ToScanWorker);
    stream.onDone = () => {
      this.busy = false;
      this.onFree();
    };
    this.#w.postMessage({ type: 'task', id, task } satisfies ToScanWorker);
  }

  async terminate(): Promise<void> {
    await this.#w.terminate();
  }
}

/**
 * This module as a scan worker thread (started by ScanPool with `workerData.lifeboatScanWorker`):
 * runs one task at a time, sends its events in batches and waits for credit (an `ack` per batch
 * the main thread has taken).
 */
if (!isMainThread && (workerData as { lifeboatScanWorker?: boolean } | null)?.lifeboatScanWorker && parentPort) {
  const port = parentPort;
  const tasks: { id: number; task: ScanTask }[] = [];
  let current = 0;
  let credits = 0;
  let waiting: (() => void) | undefined;
  let running = false;
  const credit = async (): Promise<void> => {
    while (credits === 0) await new Promise<void>((r) => (waiting = r));
    credits--;
  };
  const drain = async (): Promise<void> => {
    if (running) return;
    running = true;
    while (tasks.length > 0) {
      const { id, task } = tasks.shift()!;
      current = id;
      credits = 0;
      try {
        await runScanTask(task, (m, transfer) => port.postMessage(m, transfer), credit);
        credits = 0;
        port.postMessage({ type: 'end' } satisfies FromScanWorker);
      } catch (err) {
        credits = 0;
        port.postMessage({ type: 'fail', message: (err as Error).message } satisfies FromScanWorker);
      }
    }
    running = false;
  };
  port.on('message', (m: ToScanWorker) => {
    if (m.type === 'ack') {
      if (m.id !== current) return;
      credits++;
      const w = waiting;
      waiting = undefined;
      w?.();
    } else {
      tasks.push({ id: m.id, task: m.task });
      void drain();
    }
  });
}
