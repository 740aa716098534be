import robotsParserModule from 'robots-parser';
import { RetryableFetchError, ScopeError, errorMessage } from '../../config/errors.js';

// robots-parser is CommonJS (`module.exports = fn`) while its types declare `export default fn`.
type RobotsParser = (typeof robotsParserModule)['default'];
const robotsParser: RobotsParser =
  typeof robotsParserModule === 'function' ? (robotsParserModule as RobotsParser) : robotsParserModule.default;

/**
 * robots.txt per origin, following RFC 9309:
 * - 2xx: the rules apply (parsed by robots-parser, first 500 KiB);
 * - 4xx ("unavailable"): everything is allowed — except 429, treated like 5xx;
 * - 5xx, 429 or a network error ("unreachable"): everything is disallowed for now, and the file
 *   is fetched again after `unreachableRetryMs`;
 * - 3xx: the fetcher follows up to five redirects within scope (RFC 9309); a 3xx that reaches
 *   us means it gave up (more redirects, or out of scope), which counts as unavailable.
 * At most the first 500 KiB are read (the rest is never downloaded) and parsed.
 * One fetch per origin: the result is cached for `cacheTtlMs` (RFC 9309: at most 24 hours) and
 * concurrent callers share the in-flight fetch.
 */

export interface RobotsResponse {
  status: number;
  body: string;
  /** Why a 3xx ended the fetch (too many redirects, out of scope), for the log. */
  note?: string;
}

export type RobotsDecision = 'ignored' | 'allowed' | 'disallowed' | 'unavailable' | 'unreachable';

export interface RobotsVerdict {
  allowed: boolean;
  /** `ignored` (mode ignore), `allowed`/`disallowed` (by rules), `unavailable` (4xx: allowed), `unreachable` (5xx/error: refused for now). */
  decision: RobotsDecision;
  /** For `unreachable`: how long until robots.txt is fetched again. */
  retryAfterMs?: number;
}

export interface RobotsPolicyOptions {
  /** Our User-Agent; its product token (`lifeboat` in `lifeboat/0.1 (+https://…)`) selects the rule group. */
  userAgent: string;
  mode: 'obey' | 'ignore';
  /** Fetches a robots.txt URL, following redirects; rejects on a network error. */
  fetchRobots: (robotsUrl: string) => Promise<RobotsResponse>;
  /** Clock in ms. Default `Date.now`. */
  now?: () => number;
  /** How long an unreachable robots.txt blocks its origin before the next fetch. Default 60,000 ms. */
  unreachableRetryMs?: number;
  /** How long a fetched robots.txt is trusted. Default 24 hours. */
  cacheTtlMs?: number;
  /**
   * Told each time an origin's robots.txt turns out unreachable, with why: nothing is fetched
   * from that origin until the next try, and the crawl would otherwise stall with no visible reason.
   */
  onUnreachable?: (origin: string, reason: string, retryInMs: number) => void;
  /** Told once when a robots.txt fetch has not finished after `slowNoticeMs` (a trickling file): the host waits for it. */
  onSlow?: (origin: string, waitedMs: number) => void;
  /** Default 10,000 ms. */
  slowNoticeMs?: number;
}

/** RFC 9309 §2.5: crawlers must parse at least 500 KiB; more is neither read nor parsed. */
export const MAX_ROBOTS_BYTES = 500 * 1024;
const MAX_ROBOTS_CHARS = MAX_ROBOTS_BYTES;

type Robot = ReturnType<typeof robotsParser>;

type OriginRules =
  | { kind: 'rules'; robot: Robot }
  | { kind: 'unavailable' }
  | { kind: 'unreachable'; reason: string };

interface CacheEntry {
  expiresAtMs: number;
  rules: Promise<OriginRules>;
}

export class RobotsPolicy {
  readonly #productToken: string;
  readonly #mode: 'obey' | 'ignore';
  readonly #fetchRobots: (robotsUrl: string) => Promise<RobotsResponse>;
  readonly #now: () => number;
  readonly #unreachableRetryMs: number;
  readonly #cacheTtlMs: number;
  readonly #onUnreachable: RobotsPolicyOptions['onUnreachable'];
  readonly #onSlow: RobotsPolicyOptions['onSlow'];
  readonly #slowNoticeMs: number;
  readonly #byOrigin = new Map<string, CacheEntry>();

  constructor(opts: RobotsPolicyOptions) {
    const { userAgent, mode, fetchRobots, now = Date.now, unreachableRetryMs = 60_000, cacheTtlMs = 24 * 3600_000 } = opts;
    this.#productToken = productToken(userAgent);
    this.#mode = mode;
    this.#fetchRobots = fetchRobots;
    this.#now = now;
    this.#unreachableRetryMs = unreachableRetryMs;
    this.#cacheTtlMs = cacheTtlMs;
    this.#onUnreachable = opts.onUnreachable;
    this.#onSlow = opts.onSlow;
    this.#slowNoticeMs = opts.slowNoticeMs ?? 10_000;
  }

  async isAllowed(url: string): Promise<boolean> {
    return (await this.check(url)).allowed;
  }

  /** Crawl-delay for our user agent in ms, if robots.txt sets one (and mode is obey). */
  async crawlDelayMs(url: string): Promise<number | undefined> {
    if (this.#mode === 'ignore') return undefined;
    const rules = await this.#rulesFor(parseUrl(url));
    if (rules.kind !== 'rules') return undefined;
    const secs = rules.robot.getCrawlDelay(this.#productToken);
    return secs === undefined || !Number.isFinite(secs) || secs < 0 ? undefined : Math.round(secs * 1000);
  }

  /** The decision and why, so a caller can retry `unreachable` instead of giving up. */
  async check(url: string): Promise<RobotsVerdict> {
    if (this.#mode === 'ignore') return { allowed: true, decision: 'ignored' };
    const parsed = parseUrl(url);
    const entry = this.#entryFor(parsed);
    const rules = await entry.rules;
    switch (rules.kind) {
      case 'unavailable':
        return { allowed: true, decision: 'unavailable' };
      case 'unreachable':
        return { allowed: false, decision: 'unreachable', retryAfterMs: Math.max(entry.expiresAtMs - this.#now(), 0) };
      case 'rules': {
        // robots-parser answers undefined for another origin; ours is always the same origin.
        const allowed = rules.robot.isAllowed(parsed.href, this.#productToken) !== false;
        return { allowed, decision: allowed ? 'allowed' : 'disallowed' };
      }
    }
  }

  /**
   * Throws unless `url` may be fetched: ScopeError `E_ROBOTS` when the rules disallow it (give up
   * on it), RetryableFetchError `E_ROBOTS_UNREACHABLE` when robots.txt could not be fetched (try later).
   */
  async assertAllowed(url: string): Promise<void> {
    const verdict = await this.check(url);
    if (verdict.allowed) return;
    if (verdict.decision === 'unreachable') {
      throw new RetryableFetchError(`${url}: robots.txt of its origin is unreachable; not fetching for now`, {
        code: 'E_ROBOTS_UNREACHABLE',
        ...(verdict.retryAfterMs !== undefined ? { retryAfterMs: verdict.retryAfterMs } : {}),
      });
    }
    throw new ScopeError(`${url}: robots.txt disallows it`, { code: 'E_ROBOTS' });
  }

  async #rulesFor(url: URL): Promise<OriginRules> {
    return this.#entryFor(url).rules;
  }

  #entryFor(url: URL): CacheEntry {
    const origin = url.origin;
    const nowMs = this.#now();
    const cached = this.#byOrigin.get(origin);
    if (cached && cached.expiresAtMs > nowMs) return cached;
    // Until the fetch settles the entry never expires, so concurrent callers share it.
    const entry: CacheEntry = { expiresAtMs: Number.POSITIVE_INFINITY, rules: Promise.resolve({ kind: 'unavailable' }) };
    const onSlow = this.#onSlow;
    const slow = onSlow ? setTimeout(() => onSlow(origin, this.#slowNoticeMs), this.#slowNoticeMs) : undefined;
    slow?.unref();
    entry.rules = this.#load(`${origin}/robots.txt`).then((rules) => {
      clearTimeout(slow);
      const ttlMs = rules.kind === 'unreachable' ? this.#unreachableRetryMs : this.#cacheTtlMs;
      entry.expiresAtMs = this.#now() + ttlMs;
      if (rules.kind === 'unreachable') this.#onUnreachable?.(origin, rules.reason, ttlMs);
      return rules;
    });
    this.#byOrigin.set(origin, entry);
    this.#dropExpired(nowMs);
    return entry;
  }

  async #load(robotsUrl: string): Promise<OriginRules> {
    let response: RobotsResponse;
    try {
      response = await this.#fetchRobots(robotsUrl);
    } catch (err) {
      return { kind: 'unreachable', reason: errorMessage(err) };
    }
    const { status, body } = response;
    if (status >= 200 && status < 300) return { kind: 'rules', robot: robotsParser(robotsUrl, body.slice(0, MAX_ROBOTS_CHARS)) };
    if (status === 429 || status >= 500 || status < 100) return { kind: 'unreachable', reason: `HTTP ${status}` };
    return { kind: 'unavailable' };
  }

  #dropExpired(nowMs: number): void {
    if (this.#byOrigin.size < 1024) return;
    for (const [origin, entry] of this.#byOrigin) if (entry.expiresAtMs <= nowMs) this.#byOrigin.delete(origin);
  }
}

/** RFC 9309 §2.2.1: the product token, e.g. `lifeboat` of `lifeboat/0.1 (+https://example.org)`. */
function productToken(userAgent: string): string {
  const token = /^[A-Za-z_-]+/.exec(userAgent.trim())?.[0];
  return token ? token.toLowerCase() : '*';
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch (cause) {
    throw new ScopeError(`not a valid URL: ${url.slice(0, 200)}`, { code: 'E_SCOPE_URL', cause });
  }
}
