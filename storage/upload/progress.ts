/** An upload run's progress: bytes and files done, recent MB/s and ETA, throttled to the listener. */

/** Progress of a whole upload run, handed to `onProgress`. */
export interface UploadProgress {
  /** The file that just moved (shard-relative name). */
  file: string;
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Recent throughput over the last few seconds, in MB/s (10^6 bytes). */
  mbPerSec: number;
  /** Seconds left at the recent rate; `undefined` until a rate is known. */
  etaSecs: number | undefined;
}
export type ProgressListener = (progress: UploadProgress) => void;

/** Counts bytes, computes a sliding-window rate, and throttles `onProgress` calls. */
export class TransferMeter {
  readonly #listener: ProgressListener | undefined;
  readonly #windowMs: number;
  readonly #intervalMs: number;
  readonly #samples: Array<{ t: number; bytes: number }> = [];
  #bytesTotal = 0;
  #bytesDone = 0;
  #filesTotal = 0;
  #filesDone = 0;
  #lastEmit = 0;
  /** Bytes each file sent in this run (credits excluded): files go up side by side, so the run's total cannot tell them apart. */
  readonly #sent = new Map<string, number>();

  constructor(options: { onProgress?: ProgressListener; windowMs?: number; intervalMs?: number } = {}) {
    this.#listener = options.onProgress;
    this.#windowMs = options.windowMs ?? 5000;
    this.#intervalMs = options.intervalMs ?? 250;
  }

  addFile(bytes: number): void {
    this.#filesTotal += 1;
    this.#bytesTotal += bytes;
  }

  /** Bytes confirmed already present (skip, or parts landed before a crash): done, but not rate. */
  credit(file: string, bytes: number): void {
    this.#bytesDone += bytes;
    this.#emit(file, false);
  }

  add(file: string, bytes: number): void {
    this.#bytesDone += bytes;
    this.#sent.set(file, (this.#sent.get(file) ?? 0) + bytes);
    const t = performance.now();
    this.#samples.push({ t, bytes: this.#bytesDone });
    while (this.#samples.length > 2 && this.#samples[0]!.t < t - this.#windowMs) this.#samples.shift();
    this.#emit(file, false);
  }

  /** Takes back bytes of `file`'s attempt that failed and will be re-sent. */
  rewind(file: string, bytes: number): void {
    this.#bytesDone = Math.max(0, this.#bytesDone - bytes);
    this.#sent.set(file, Math.max(0, (this.#sent.get(file) ?? 0) - bytes));
  }

  /** What `file` sent in this run (`add` less `rewind`): not what was credited as already there. */
  sentBy(file: string): number {
    return this.#sent.get(file) ?? 0;
  }

  fileDone(file: string): void {
    this.#filesDone += 1;
    this.#emit(file, true);
  }

  get bytesDone(): number {
    return this.#bytesDone;
  }

  mbPerSec(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.t - first.t < 1) return 0;
    return (last.bytes - first.bytes) / 1e6 / ((last.t - first.t) / 1000);
  }

  #emit(file: string, force: boolean): void {
    if (!this.#listener) return;
    const now = performance.now();
    if (!force && now - this.#lastEmit < this.#intervalMs) return;
    this.#lastEmit = now;
    const rate = this.mbPerSec();
    const left = Math.max(0, this.#bytesTotal - this.#bytesDone);
    this.#listener({
      file,
      bytesDone: this.#bytesDone,
      bytesTotal: this.#bytesTotal,
      filesDone: this.#filesDone,
      filesTotal: this.#filesTotal,
      mbPerSec: rate,
      etaSecs: rate > 0 ? left / 1e6 / rate : undefined,
    });
  }
}
