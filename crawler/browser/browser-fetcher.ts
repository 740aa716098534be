import net from 'node:net';
import { RetryableFetchError, ScopeError, errorMessage } from '../../config/errors.js';
import { capturePage, renderedDomCapture, type BrowserCaptureResult } from './browser-capture.js';
import type { BrowserPool } from './browser-pool.js';
import type { Fetched } from '../fetch/fetched.js';
import type { FetcherEvents } from '../fetch/fetcher.js';
import type { HostLimiter } from '../fetch/host-limiter.js';
import { hostDownCode, isRetryable, isRetryableStatus, parseRetryAfter, retryAfterOfHead, retrying } from '../../config/retry.js';
import type { RobotsPolicy } from '../fetch/robots.js';
import type { ScopeGuard } from '../fetch/scope-guard.js';

/**
 * The browser counterpart of `Fetcher` (same layers, same retry rules): scope and robots for the
 * page and for every request the page makes, one politeness token per page, a pooled page,
 * and retries with backoff when the page times out, crashes, loses its browser or answers a
 * retryable status. It does not own the pool: whoever created the pool closes it.
 */
export interface BrowserFetcherOptions {
  pool: BrowserPool;
  guard: ScopeGuard;
  robots: RobotsPolicy;
  limiter: HostLimiter;
  maxAttempts: number;
  /** A page is abandoned after this long (navigation, network idle, screenshot). */
  pageTimeoutMs: number;
  /** Upper bound on the wait for network idle after `load`. Default min(10 s, pageTimeoutMs / 2). */
  idleMaxMs?: number;
  idleMs?: number;
  maxBodyBytes: number;
  screenshots?: boolean;
  /** Upper bound of the first retry's delay (crawl settings). */
  backoffBaseMs: number;
  /** How long a host may refuse connections before attempts start to count (as the HTTP fetcher; `politeness.max_outage_ms`). */
  maxOutageMs?: number;
  events?: FetcherEvents & { onBlocked?: (url: string, reason: string) => void };
  signal?: AbortSignal;
}

const ADDRESS_CACHE_MS = 60_000;

export class BrowserFetcher {
  readonly #o: BrowserFetcherOptions;
  readonly #addressOk = new Map<string, { ok: string | undefined; at: number }>();

  constructor(options: BrowserFetcherOptions) {
    this.#o = options;
  }

  /** Why the browser may not request `url`; undefined when it may. */
  readonly allowRequest = async (url: string): Promise<string | undefined> => {
    let target: URL;
    try {
      target = this.#o.guard.checkUrl(url);
    } catch (err) {
      return errorMessage(err);
    }
    const byAddress = await this.#checkAddress(target.hostname);
    if (byAddress) return byAddress;
    if (!(await this.#o.robots.isAllowed(target.href).catch(() => true))) return 'robots.txt disallows it';
    return undefined;
  };

  /** Names resolve through the guard's lookup too (a name in scope may point at a refused address). */
  async #checkAddress(hostname: string): Promise<string | undefined> {
    const host = hostname.replace(/^\[|\]$/g, '');
    if (net.isIP(host) !== 0) return undefined; // checkUrl judged the literal
    const cached = this.#addressOk.get(host);
    if (cached && Date.now() - cached.at < ADDRESS_CACHE_MS) return cached.ok;
    const ok = await new Promise<string | undefined>((resolve) => {
      this.#o.guard.lookup(host, { all: true }, (err) => resolve(err ? errorMessage(err) : undefined));
    });
    this.#addressOk.set(host, { ok, at: Date.now() });
    return ok;
  }

  /**
   * Captures one page (with retries); throws ScopeError or the last retryable error. The answer
   * extraction reads is the rendered DOM; `captures` are every response the page loaded.
   */
  async fetch(url: string): Promise<Fetched> {
    const { pool, limiter, maxAttempts, pageTimeoutMs } = this.#o;
    const refused = await this.allowRequest(url);
    if (refused) throw new ScopeError(`${url}: ${refused}`, { code: 'E_SCOPE' });
    const host = new URL(url).host;
    const { value: result, attempts } = await retrying<BrowserCaptureResult>(
      {
        maxAttempts,
        backoffBaseMs: this.#o.backoffBaseMs,
        ...(this.#o.maxOutageMs !== undefined ? { maxOutageMs: this.#o.maxOutageMs } : {}),
        ...(this.#o.signal ? { signal: this.#o.signal } : {}),
        onRetry: (reason, r) => this.#o.events?.onRetry?.(url, reason, r.waitMs),
        giveUp: (last) => last,
      },
      async () => {
        try {
          const result = await pool.withPage(
            (page, context) =>
              capturePage(page, context, {
                url,
                allowRequest: async (u) => {
                  const reason = await this.allowRequest(u);
                  if (reason) this.#o.events?.onBlocked?.(u, reason);
                  return reason;
                },
                navigationTimeoutMs: pageTimeoutMs,
                idleMaxMs: this.#o.idleMaxMs ?? Math.min(10_000, pageTimeoutMs / 2),
                ...(this.#o.idleMs !== undefined ? { idleMs: this.#o.idleMs } : {}),
                maxBodyBytes: this.#o.maxBodyBytes,
                screenshot: this.#o.screenshots ?? false,
                // A token, not a slot: the page's own sub-requests are not counted one by one.
                beforeNavigate: () => limiter.run(host, async () => undefined),
              }),
            { timeoutMs: pageTimeoutMs, ...(this.#o.signal ? { signal: this.#o.signal } : {}) },
          );
          if (!isRetryableStatus(result.status)) {
            limiter.succeeded(host);
            return { ok: result };
          }
          // The same rules as the HTTP fetcher: the server's Retry-After is waited for and slows the host.
          const retryAfter = result.document ? parseRetryAfter(retryAfterOfHead(result.document.responseHead)) : undefined;
          if (result.status === 429) {
            limiter.throttled(host, retryAfter);
            this.#o.events?.onThrottle?.(host);
          }
          const retry = new RetryableFetchError(`${url}: HTTP ${result.status} (browser)`, { code: `E_HTTP_${result.status}`, ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}) });
          return retryAfter !== undefined ? { retry, waitMs: retryAfter } : { retry };
        } catch (err) {
          if (err instanceof ScopeError) throw err;
          // A host that refuses connections is waited out like the HTTP fetcher does (maxOutageMs).
          const hostDown = hostDownCode(err) !== undefined;
          if (!hostDown && !isRetryable(err)) throw err;
          return { retry: err as Error, hostDown };
        }
      },
    );
    const rendered = { text: result.renderedText, blocked: result.blocked, idleTimedOut: result.idleTimedOut, ...(result.screenshot ? { screenshot: result.screenshot } : {}) };
    return { captures: result.captures, answer: renderedDomCapture(result), status: result.status, finalUrl: result.finalUrl, attempts, rendered };
  }
}
