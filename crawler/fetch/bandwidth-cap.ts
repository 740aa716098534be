/**
 * A volunteer's bandwidth cap (`--max-bandwidth`, issue 14): one budget of bytes per second shared
 * by every response body a crawl part reads. Each chunk read is charged as it arrives; when the
 * reads run ahead of the budget, the reader pauses (undici's backpressure) until the budget has
 * caught up. A burst of up to `burstMs` worth of bytes (default 1 s) passes at once, so the rate is
 * smoothed over about a second rather than enforced per chunk.
 *
 * The algorithm is GCRA (virtual scheduling): `#freeAt` is the time at which everything charged
 * so far would have been sent at exactly the cap; a caller waits for the part of that ahead of
 * now beyond the burst. Concurrent readers therefore share one queue in arrival order, and the
 * total over any long window is at most `bytesPerSec × window + burst`.
 */
export class BandwidthCap {
  readonly bytesPerSec: number;
  readonly #burstMs: number;
  readonly #now: () => number;
  #freeAt = Number.NEGATIVE_INFINITY;
  #charged = 0;

  constructor(options: { bytesPerSec: number; burstMs?: number; now?: () => number }) {
    const { bytesPerSec, burstMs = 1000, now = () => performance.now() } = options;
    if (!(bytesPerSec > 0) || !Number.isFinite(bytesPerSec)) throw new RangeError(`bytesPerSec must be a positive number, got ${bytesPerSec}`);
    this.bytesPerSec = bytesPerSec;
    this.#burstMs = burstMs;
    this.#now = now;
  }

  /** Bytes charged so far (every body byte read through the cap). */
  get chargedBytes(): number {
    return this.#charged;
  }

  /** Charges `bytes` just read; returns how long (ms) the reader should pause before reading on (0: go on). */
  take(bytes: number): number {
    const now = this.#now();
    this.#charged += bytes;
    this.#freeAt = Math.max(this.#freeAt, now) + (bytes * 1000) / this.bytesPerSec;
    return Math.max(0, this.#freeAt - now - this.#burstMs);
  }
}
