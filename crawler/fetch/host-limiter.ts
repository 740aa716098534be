import PQueue from 'p-queue';
import { InputError } from '../../config/errors.js';

/**
 * Per-host politeness (ARCHITECTURE.md "One ID", the politeness slot): for each host a concurrency cap (a p-queue)
 * and a token bucket, with AIMD on 429s — the rate halves on a throttle (floor 0.5 req/s) and
 * grows back additively on successes. Global concurrency is the caller's own queue.
 *
 * A request first waits for one of the host's `perHostConcurrency` slots, then for a token; token
 * waits are served first come, first served. Host state lives as long as the limiter.
 */

export interface HostLimiterOptions {
  /** Requests per second per host when the host is healthy. */
  ratePerSec: number;
  /** Requests in flight per host. */
  perHostConcurrency: number;
  /** Bucket size in requests: how many may start back to back. Default max(1, ceil(ratePerSec / 10)), 100 ms worth. */
  burst?: number;
  /** Clock in ms. Default `Date.now` (so vitest fake timers drive it). */
  now?: () => number;
  /** Waits `ms`. Default a `setTimeout` promise. */
  sleep?: (ms: number) => Promise<void>;
  /** Lowest rate a host is slowed to by throttles, req/s. Default 0.5 (or ratePerSec, if lower). */
  minRatePerSec?: number;
  /** Rate regained per success, req/s. Default: about 10% of the current rate (at least 1 req/s) per second of successes. */
  recoveryPerSuccessPerSec?: number;
  /** Pause after a 429 without Retry-After: doubles with each consecutive throttle. Default 1,000 ms. */
  basePauseMs?: number;
  /** Longest pause after a 429 without Retry-After. Default 60,000 ms. */
  maxPauseMs?: number;
}

export interface HostStats {
  /** Current rate, req/s (summed over hosts for the total). */
  rate: number;
  /** 429s reported by `throttled`. */
  throttles: number;
  /** Running `fn`s. */
  inFlight: number;
  /** Waiting for a slot or a token. */
  queued: number;
  /** How long the host stays paused from now (the longest, for the total). */
  pausedForMs: number;
}

interface HostState {
  queue: PQueue;
  ceilingPerSec: number;
  ratePerSec: number;
  tokens: number;
  refilledAtMs: number;
  pausedUntilMs: number;
  /** Tail of the chain of token waits: FIFO, one waiter computes at a time. */
  gate: Promise<void>;
  throttles: number;
  consecutiveThrottles: number;
  inFlight: number;
  /** Requests started in the current and the previous one-second window: the observed rate. */
  windowStartMs: number;
  windowCount: number;
  lastWindowCount: number;
}

export class HostLimiter {
  readonly #ratePerSec: number;
  readonly #perHostConcurrency: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #minRatePerSec: number;
  readonly #recoveryPerSuccessPerSec: number | undefined;
  readonly #basePauseMs: number;
  readonly #maxPauseMs: number;
  readonly #hosts = new Map<string, HostState>();

  constructor(opts: HostLimiterOptions) {
    const {
      ratePerSec,
      perHostConcurrency,
      burst = Math.max(1, Math.ceil(ratePerSec / 10)),
      now = Date.now,
      sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
      minRatePerSec = 0.5,
      recoveryPerSuccessPerSec,
      basePauseMs = 1000,
      maxPauseMs = 60_000,
    } = opts;
    if (!(ratePerSec > 0) || !Number.isFinite(ratePerSec)) throw new InputError(`ratePerSec must be a positive number, got ${ratePerSec}`);
    if (!Number.isInteger(perHostConcurrency) || perHostConcurrency < 1) {
      throw new InputError(`perHostConcurrency must be a positive integer, got ${perHostConcurrency}`);
    }
    if (!(burst >= 1)) throw new InputError(`burst must be at least 1, got ${burst}`);
    this.#ratePerSec = ratePerSec;
    this.#perHostConcurrency = perHostConcurrency;
    this.#burst = burst;
    this.#now = now;
    this.#sleep = sleep;
    this.#minRatePerSec = minRatePerSec;
    this.#recoveryPerSuccessPerSec = recoveryPerSuccessPerSec;
    this.#basePauseMs = basePauseMs;
    this.#maxPauseMs = maxPauseMs;
  }

  /** Runs `fn` once `host` has a free slot and a token; the slot is held until `fn` settles. */
  run<T>(host: string, fn: () => Promise<T>): Promise<T> {
    const state = this.#state(host);
    return state.queue.add(async () => {
      await this.#takeToken(state);
      this.#countStart(state);
      state.inFlight += 1;
      try {
        return await fn();
      } finally {
        state.inFlight -= 1;
      }
    });
  }

  /**
   * A 429 (or 503 with Retry-After) from `host`: no new request starts before `retryAfterMs`
   * (or an exponential pause when absent) and the rate halves. Throttles reported while the host
   * is already paused come from requests started before the pause: they extend it, nothing more.
   */
  throttled(host: string, retryAfterMs: number | undefined): void {
    const state = this.#state(host);
    const nowMs = this.#now();
    state.throttles += 1;
    if (nowMs >= state.pausedUntilMs) {
      state.consecutiveThrottles += 1;
      // Halve what the host really got, not a configured rate it never reached.
      const observed = Math.max(state.windowCount, state.lastWindowCount);
      const base = observed >= 10 ? Math.min(state.ratePerSec, observed) : state.ratePerSec;
      state.ratePerSec = Math.max(Math.min(this.#minRatePerSec, state.ceilingPerSec), base / 2);
    }
    const backoffMs = Math.min(this.#maxPauseMs, this.#basePauseMs * 2 ** Math.min(state.consecutiveThrottles - 1, 30));
    const pauseMs = retryAfterMs !== undefined && retryAfterMs >= 0 ? retryAfterMs : backoffMs;
    if (nowMs + pauseMs > state.pausedUntilMs) state.pausedUntilMs = nowMs + pauseMs;
    // No burst when the pause ends: the bucket holds exactly one token then (none sooner), and
    // the rest follow at the lowered rate.
    state.tokens = 0;
    state.refilledAtMs = Math.max(nowMs, state.pausedUntilMs - 1000 / state.ratePerSec);
  }

  #countStart(state: HostState): void {
    const nowMs = this.#now();
    if (nowMs - state.windowStartMs >= 1000) {
      state.lastWindowCount = nowMs - state.windowStartMs < 2000 ? state.windowCount : 0;
      state.windowStartMs = nowMs;
      state.windowCount = 0;
    }
    state.windowCount += 1;
  }

  /** A request to `host` succeeded: the rate grows back by a fixed step toward its ceiling. */
  succeeded(host: string): void {
    const state = this.#state(host);
    state.consecutiveThrottles = 0;
    // Additive increase of about 10% of the current rate per second of successes (at least 1 req/s per second).
    const stepPerSec = this.#recoveryPerSuccessPerSec ?? Math.max(1, state.ratePerSec * 0.1) / state.ratePerSec;
    state.ratePerSec = Math.min(state.ceilingPerSec, state.ratePerSec + stepPerSec);
  }

  /** Lowers (or restores) the ceiling for one host, e.g. from robots.txt Crawl-delay: 1000 / delayMs. */
  setHostRate(host: string, ratePerSec: number): void {
    if (!(ratePerSec > 0)) throw new InputError(`ratePerSec must be a positive number, got ${ratePerSec}`);
    const state = this.#state(host);
    state.ceilingPerSec = Math.min(ratePerSec, this.#ratePerSec);
    state.ratePerSec = Math.min(state.ratePerSec, state.ceilingPerSec);
  }

  /** One host's figures, or the totals over all hosts. */
  stats(host?: string): HostStats {
    const nowMs = this.#now();
    const states = host === undefined ? [...this.#hosts.values()] : [this.#hosts.get(hostKey(host))];
    const total: HostStats = { rate: 0, throttles: 0, inFlight: 0, queued: 0, pausedForMs: 0 };
    for (const s of states) {
      if (!s) {
        total.rate += this.#ratePerSec;
        continue;
      }
      total.rate += s.ratePerSec;
      total.throttles += s.throttles;
      total.inFlight += s.inFlight;
      total.queued += s.queue.size + s.queue.pending - s.inFlight;
      total.pausedForMs = Math.max(total.pausedForMs, s.pausedUntilMs - nowMs);
    }
    return total;
  }

  #state(host: string): HostState {
    const key = hostKey(host);
    let state = this.#hosts.get(key);
    if (!state) {
      state = {
        queue: new PQueue({ concurrency: this.#perHostConcurrency }),
        ceilingPerSec: this.#ratePerSec,
        ratePerSec: this.#ratePerSec,
        tokens: this.#burst,
        refilledAtMs: this.#now(),
        pausedUntilMs: Number.NEGATIVE_INFINITY,
        gate: Promise.resolve(),
        throttles: 0,
        consecutiveThrottles: 0,
        windowStartMs: this.#now(),
        windowCount: 0,
        lastWindowCount: 0,
        inFlight: 0,
      };
      this.#hosts.set(key, state);
    }
    return state;
  }

  #takeToken(state: HostState): Promise<void> {
    const turn = state.gate.then(() => this.#waitForToken(state));
    state.gate = turn.catch(() => undefined);
    return turn;
  }

  async #waitForToken(state: HostState): Promise<void> {
    for (;;) {
      const nowMs = this.#now();
      if (nowMs < state.pausedUntilMs) {
        await this.#sleep(state.pausedUntilMs - nowMs);
        continue;
      }
      // The bucket shrinks with the rate, so a slowed host gets no full-size burst either.
      const capacity = Math.max(1, (this.#burst * state.ratePerSec) / this.#ratePerSec);
      if (nowMs > state.refilledAtMs) {
        state.tokens = Math.min(capacity, state.tokens + ((nowMs - state.refilledAtMs) * state.ratePerSec) / 1000);
        state.refilledAtMs = nowMs;
      }
      if (state.tokens >= 1) {
        state.tokens -= 1;
        return;
      }
      await this.#sleep(Math.max(1, Math.ceil(((1 - state.tokens) * 1000) / state.ratePerSec)));
    }
  }
}

function hostKey(host: string): string {
  return host.toLowerCase().replace(/\.+$/, '');
}
