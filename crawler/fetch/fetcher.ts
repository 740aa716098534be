import { LifeboatError, RetryableFetchError, ScopeError } from '../../config/errors.js';
import type { Capture } from '../../storage/warc/capture.js';
import type { Fetched } from './fetched.js';
import type { HostLimiter } from './host-limiter.js';
import { releaseBody, type HttpCapturer } from './http-capture.js';
import { hostDownCode, isRetryable, isRetryableStatus, parseRetryAfter, retryAfterOfHead, retrying } from '../../config/retry.js';
import type { RobotsPolicy } from './robots.js';
import type { ScopeGuard } from './scope-guard.js';

/**
 * The capture layers composed (ARCHITECTURE.md "House rules"): scope → robots → per-host politeness →
 * undici capture → retry with backoff → redirects recorded and followed within scope. The result
 * is a `Fetched` (fetched.ts), the shape the browser's fetcher gives too.
 */

export interface FetcherEvents {
  onThrottle?: (host: string) => void;
  /** A failed attempt; `waitMs` is the wait before the next one (0 after the last). */
  onRetry?: (url: string, reason: string, waitMs: number) => void;
}

export interface FetcherOptions {
  capturer: HttpCapturer;
  guard: ScopeGuard;
  robots: RobotsPolicy;
  limiter: HostLimiter;
  maxAttempts: number;
  maxRedirects: number;
  events?: FetcherEvents;
  signal?: AbortSignal;
  /** Upper bound of the first retry's delay (crawl settings). */
  backoffBaseMs: number;
  /**
   * How long a host may refuse connections (down, restarting) before attempts start to count:
   * during an outage requests wait (backoff capped at 10 s) instead of using up `maxAttempts`.
   * The profile's `politeness.max_outage_ms`.
   */
  maxOutageMs: number;
}


/** Requests sent before a fetch failed, kept with its error (`ids.attempts` counts every one). */
const attemptsByError = new WeakMap<object, number>();

function withAttempts(err: unknown, attempts: number): unknown {
  if (err !== null && typeof err === 'object') attemptsByError.set(err, attempts);
  return err;
}

/** How many requests a failed `Fetcher.fetch` sent (1 for errors from elsewhere). */
export function attemptsOf(err: unknown): number {
  return (err !== null && typeof err === 'object' ? attemptsByError.get(err) : undefined) ?? 1;
}

function locationOf(c: Capture): string | undefined {
  return /^location:[ \t]*(.*)$/im.exec(c.responseHead.toString('latin1'))?.[1]?.trim();
}

/** The hops of one fetch as a `Fetched`: the last hop is the answer. */
function fetched(hops: Capture[], attempts: number): Fetched {
  const answer = hops[hops.length - 1]!;
  return { captures: hops, answer, status: answer.status, finalUrl: answer.url, attempts };
}

export class Fetcher {
  readonly #o: FetcherOptions;

  constructor(options: FetcherOptions) {
    this.#o = options;
  }

  /** Fetches one URL (with retries); throws ScopeError (robots, scope) or the last retryable error. */
  async fetch(url: string, headers: Record<string, string> = {}): Promise<Fetched> {
    const hops: Capture[] = [];
    let attempts = 0;
    let current = url;
    const seen = new Set<string>();
    for (;;) {
      let one: { capture: Capture; tries: number };
      try {
        one = await this.#fetchOne(current, headers);
      } catch (err) {
        const total = attempts + attemptsOf(err);
        if (err instanceof ScopeError && hops.length > 0) return { ...fetched(hops, total), stopped: err.message };
        throw withAttempts(err, total);
      }
      const { capture, tries } = one;
      attempts += tries;
      hops.push(capture);
      const location = capture.status >= 300 && capture.status < 400 ? locationOf(capture) : undefined;
      if (!location) return fetched(hops, attempts);
      seen.add(current);
      const next = new URL(location, current).href;
      if (seen.has(next) || hops.length > this.#o.maxRedirects) {
        throw withAttempts(
          new LifeboatError(`${url}: redirect loop or more than ${this.#o.maxRedirects} redirects (last to ${next})`, { code: 'E_REDIRECTS', policy: 'give-up' }),
          attempts,
        );
      }
      current = next;
    }
  }

  async #fetchOne(url: string, headers: Record<string, string>): Promise<{ capture: Capture; tries: number }> {
    const { guard, robots, limiter, capturer, maxAttempts } = this.#o;
    const target = guard.checkUrl(url);
    const host = target.host;
    const { value: capture, attempts: tries } = await retrying<Capture>(
      {
        maxAttempts,
        backoffBaseMs: this.#o.backoffBaseMs,
        maxOutageMs: this.#o.maxOutageMs,
        ...(this.#o.signal ? { signal: this.#o.signal } : {}),
        onRetry: (reason, r) => this.#o.events?.onRetry?.(target.href, reason, r.waitMs),
        giveUp: (last, attempts) => withAttempts(last, attempts) as Error,
      },
      async (attempt) => {
        try {
          // Robots per attempt: an unreachable robots.txt means "not now" (RFC 9309), retried like a 5xx.
          await robots.assertAllowed(target.href);
          const capture = await limiter.run(host, () => capturer.fetch({ url: target.href, headers }));
          if (!isRetryableStatus(capture.status)) {
            limiter.succeeded(host);
            return { ok: capture };
          }
          await releaseBody(capture.body);
          const retryAfter = parseRetryAfter(retryAfterOfHead(capture.responseHead));
          if (capture.status === 429) {
            limiter.throttled(host, retryAfter);
            this.#o.events?.onThrottle?.(host);
          }
          const retry = new RetryableFetchError(`${target.href}: HTTP ${capture.status}`, { code: `E_HTTP_${capture.status}`, ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}) });
          return retryAfter !== undefined ? { retry, waitMs: retryAfter } : { retry };
        } catch (err) {
          // A refusal by scope or robots sent nothing; any other error ends this attempt.
          if (err instanceof ScopeError) throw withAttempts(err, attempt - 1);
          if (!isRetryable(err)) throw withAttempts(err, attempt);
          const waitMs = (err as { retryAfterMs?: number }).retryAfterMs;
          return { retry: err as Error, hostDown: hostDownCode(err) !== undefined, ...(waitMs !== undefined ? { waitMs } : {}) };
        }
      },
    );
    return { capture, tries };
  }
}
