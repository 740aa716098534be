import { setTimeout as sleep } from 'node:timers/promises';
import { LifeboatError } from './errors.js';

/**
 * The one retry module, below every layer (ARCHITECTURE.md "House rules"): the rules as data (which
 * HTTP statuses and error codes are worth another attempt: 429, 5xx, resets, timeouts, truncated
 * bodies; 404/410/401/403/451 are final), the backoff (full jitter), `parseRetryAfter` (seconds and
 * all three HTTP-date forms), and the retry loop with its outage wait (`retrying`). Every loop uses
 * it: the HTTP and browser fetchers, status-rule retries, uploads (S3 parts, pre-signed PUTs, the
 * Internet Archive), the node's upload-then-done, and the tracker client.
 */

/** The one backoff: full-jitter exponential; each loop passes its own constants. */
export interface BackoffOptions {
  /** Upper bound of the first attempt's delay. Default 1,000 ms. */
  baseMs?: number;
  /** Upper bound of any delay. Default 60,000 ms. */
  maxMs?: number;
  /** Returns a number in [0, 1). Default `Math.random`; inject for deterministic tests. */
  random?: () => number;
  /**
   * How the delay is drawn below its ceiling: `full` (default) uniform in [0, ceiling); `equal`
   * uniform in [ceiling/2, ceiling) (a pause that must last at least half, as a host's gate);
   * `none` the ceiling itself (a documented schedule a person reads: 15 s, 30 s, … 10 min).
   */
  jitter?: 'full' | 'equal' | 'none';
}

/**
 * Exponential backoff: the ceiling is min(maxMs, baseMs·2^(attempt−1)), the delay drawn below it
 * as `jitter` says (full jitter by default). `attempt` is the number of the attempt that just
 * failed, starting at 1.
 */
export function backoffMs(attempt: number, opts: BackoffOptions = {}): number {
  const { baseMs = 1000, maxMs = 60_000, random = Math.random, jitter = 'full' } = opts;
  const exponent = Math.min(Math.max(Math.floor(attempt), 1) - 1, 52);
  const ceilingMs = Math.min(maxMs, baseMs * 2 ** exponent);
  if (jitter === 'none') return ceilingMs;
  const r = Math.min(Math.max(random(), 0), 1);
  // Equal jitter is never 0 (a pause that must last at least half its ceiling, at least 1 ms).
  return jitter === 'equal' ? Math.max(Math.min(1, ceilingMs), Math.floor(ceilingMs / 2 + (r * ceilingMs) / 2)) : Math.floor(r * ceilingMs);
}

/** HTTP statuses that are worth another attempt later. 520–524 are Cloudflare's origin errors. */
export const RETRYABLE_STATUSES = [408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524] as const;

/** `code`s of Node, undici and lifeboat errors that describe a transient failure. */
export const RETRYABLE_ERROR_CODES = [
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'E_SHORT_BODY',
  'E_TOTAL_TIMEOUT',
] as const;

export type RetryableStatus = (typeof RETRYABLE_STATUSES)[number];
export type RetryableErrorCode = (typeof RETRYABLE_ERROR_CODES)[number];

/** Longest wait `parseRetryAfter` returns: a server asking for more is treated as asking for this. */
export const RETRY_AFTER_MAX_MS = 60 * 60 * 1000;

const retryableStatuses: ReadonlySet<number> = new Set(RETRYABLE_STATUSES);
const retryableCodes: ReadonlySet<string> = new Set(RETRYABLE_ERROR_CODES);
const MAX_CAUSE_DEPTH = 8;

/** Whether an HTTP answer with this status is worth another attempt (one list for every loop). */
export function isRetryableStatus(status: number): boolean {
  return retryableStatuses.has(status);
}

/** Error codes that say the host is not there right now, as opposed to a bad response. */
export const HOST_DOWN_CODES = ['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'] as const;
const hostDownCodes: ReadonlySet<string> = new Set(HOST_DOWN_CODES);
/** Chromium's names for the same conditions, as they appear in a navigation error's message. */
const BROWSER_HOST_DOWN = /net::ERR_(?:CONNECTION_REFUSED|ADDRESS_UNREACHABLE|NAME_NOT_RESOLVED|INTERNET_DISCONNECTED|CONNECTION_TIMED_OUT)\b/;

/**
 * The code that says the host is down (connection refused, unreachable, DNS not answering), looking
 * through `cause` chains; Chromium's `net::ERR_CONNECTION_REFUSED` and kin count too. `undefined`
 * for any other failure. The retry loop waits out such an outage instead of using up attempts.
 */
export function hostDownCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < MAX_CAUSE_DEPTH; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && hostDownCodes.has(code)) return code;
    const message = (e as { message?: unknown }).message;
    const browser = typeof message === 'string' ? BROWSER_HOST_DOWN.exec(message) : null;
    if (browser) return browser[0];
  }
  return undefined;
}

/** The Retry-After value of a raw HTTP response head (bytes as received), if it has one. */
export function retryAfterOfHead(head: Buffer | string): string | undefined {
  const text = typeof head === 'string' ? head : head.toString('latin1');
  return /^retry-after:[ \t]*(.*)$/im.exec(text)?.[1]?.trim();
}

/**
 * Whether a failure may succeed on a later attempt. A `LifeboatError` says so itself through its
 * policy (so a `ScopeError` is never retried, whatever its cause). Other errors are judged by
 * their `code` (or an HTTP `statusCode`/`status`), looking through `cause` chains (undici's
 * `fetch failed`) and `AggregateError.errors` (Happy Eyeballs connect failures).
 */
export function isRetryable(err: unknown): boolean {
  return isRetryableAt(err, 0);
}

function isRetryableAt(err: unknown, depth: number): boolean {
  if (depth > MAX_CAUSE_DEPTH || typeof err !== 'object' || err === null) return false;
  if (err instanceof LifeboatError) return err.policy === 'retry';
  const { code, statusCode, status, cause, errors } = err as {
    code?: unknown;
    statusCode?: unknown;
    status?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (typeof code === 'string' && retryableCodes.has(code)) return true;
  const httpStatus = typeof statusCode === 'number' ? statusCode : status;
  if (typeof httpStatus === 'number' && retryableStatuses.has(httpStatus)) return true;
  if (Array.isArray(errors) && errors.some((e) => isRetryableAt(e, depth + 1))) return true;
  return cause !== undefined && isRetryableAt(cause, depth + 1);
}

/** What one attempt came to: a result, or a failure worth another attempt. Anything else is thrown. */
export type AttemptOutcome<T> = { ok: T } | { retry: Error; /** The server's Retry-After. */ waitMs?: number; /** Connection refused and the like: the host is down. */ hostDown?: boolean };

export interface RetryLoopOptions {
  maxAttempts: number;
  /** Upper bound of the first retry's delay (full-jitter exponential backoff). */
  backoffBaseMs: number;
  /**
   * While the host is down, attempts do not count for this long: the loop waits (backoff capped
   * at 10 s) for it to come back instead of using up `maxAttempts`. 0 (default): every attempt counts.
   */
  maxOutageMs?: number;
  /** Upper bound of any backoff delay. Default 60,000 ms. */
  backoffMaxMs?: number;
  /** How the backoff is drawn below its ceiling (`backoffMs`). Default `full`. */
  jitter?: BackoffOptions['jitter'];
  signal?: AbortSignal;
  /** Told of each failed attempt, before the wait for the next one (none after the last). */
  onRetry?: (reason: string, info: { attempt: number; maxAttempts: number; waitMs: number; error: Error }) => void;
  /** Returns a number in [0, 1) for the backoff's jitter (tests inject it). Default `Math.random`. */
  random?: () => number;
  /** How to wait (tests inject a fake). Default: a timer that the signal aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** The error to throw when every attempt failed (`last` is the last attempt's). */
  giveUp: (last: Error, attempts: number) => Error;
}

/**
 * Runs `attempt(n)` for n = 1… until it gives a result, throws, or `maxAttempts` failed; waits
 * between attempts the longer of the server's Retry-After and the backoff. Resolves with the
 * result and the attempt that gave it.
 */
export async function retrying<T>(o: RetryLoopOptions, attempt: (n: number) => Promise<AttemptOutcome<T>>): Promise<{ value: T; attempts: number }> {
  const wait = (ms: number): Promise<void> => (o.sleep ? o.sleep(ms, o.signal) : sleep(ms, undefined, o.signal ? { signal: o.signal } : undefined));
  const backoff = (n: number): number => backoffMs(n, { baseMs: o.backoffBaseMs, ...(o.backoffMaxMs !== undefined ? { maxMs: o.backoffMaxMs } : {}), ...(o.jitter ? { jitter: o.jitter } : {}), ...(o.random ? { random: o.random } : {}) });
  let last: Error | undefined;
  let downSince: number | undefined;
  let downWaits = 0;
  for (let n = 1; n <= o.maxAttempts; n++) {
    o.signal?.throwIfAborted();
    const out = await attempt(n);
    if ('ok' in out) return { value: out.ok, attempts: n };
    last = out.retry;
    if (out.hostDown) {
      downSince ??= Date.now();
      if (Date.now() - downSince < (o.maxOutageMs ?? 0)) {
        // The host is down: wait for it without using up an attempt.
        n--;
        downWaits++;
        const waitMs = Math.min(10_000, backoff(downWaits));
        o.onRetry?.(last.message, { attempt: n + 1, maxAttempts: o.maxAttempts, waitMs, error: last });
        await wait(waitMs);
        continue;
      }
    } else downSince = undefined;
    if (n < o.maxAttempts) {
      const waitMs = Math.max(out.waitMs ?? 0, backoff(n));
      o.onRetry?.(last.message, { attempt: n, maxAttempts: o.maxAttempts, waitMs, error: last });
      await wait(waitMs);
    } else o.onRetry?.(last.message, { attempt: n, maxAttempts: o.maxAttempts, waitMs: 0, error: last });
  }
  throw o.giveUp(last ?? new Error('no attempt was made'), o.maxAttempts);
}

const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const TIME = '\\d{2}:\\d{2}:\\d{2}';
/** IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7). */
const IMF_FIXDATE = new RegExp(`^[A-Za-z]{3}, \\d{2} ${MONTH} \\d{4} ${TIME} GMT$`);
/** Obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`. */
const RFC850_DATE = new RegExp(`^[A-Za-z]{6,9}, (\\d{2})-(${MONTH})-(\\d{2}) (${TIME}) GMT$`);
/** Obsolete asctime `Sun Nov  6 08:49:37 1994` (always GMT). */
const ASCTIME_DATE = new RegExp(`^[A-Za-z]{3} (${MONTH}) ([ \\d]\\d) (${TIME}) (\\d{4})$`);

function parseHttpDateMs(value: string): number | undefined {
  let normalised: string | undefined;
  if (IMF_FIXDATE.test(value)) normalised = value;
  const rfc850 = RFC850_DATE.exec(value);
  if (rfc850) {
    // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
    const yy = Number(rfc850[3]);
    const year = 2000 + yy > new Date().getUTCFullYear() + 50 ? 1900 + yy : 2000 + yy;
    normalised = `${rfc850[1]} ${rfc850[2]} ${year} ${rfc850[4]} GMT`;
  }
  const asctime = ASCTIME_DATE.exec(value);
  if (asctime) normalised = `${asctime[2]?.trim()} ${asctime[1]} ${asctime[4]} ${asctime[3]} GMT`;
  if (normalised === undefined) return undefined;
  const ms = Date.parse(normalised);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * A Retry-After header value as a wait in milliseconds: delay-seconds (`120`) or an HTTP-date
 * relative to `now` (epoch ms; a date in the past gives 0). Capped at `RETRY_AFTER_MAX_MS`.
 * Anything else (empty, negative, fractional, unparseable) gives `undefined`: the caller falls
 * back to its own backoff.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) {
    const secs = Number(trimmed);
    return Number.isFinite(secs) ? Math.min(secs * 1000, RETRY_AFTER_MAX_MS) : RETRY_AFTER_MAX_MS;
  }
  const atMs = parseHttpDateMs(trimmed);
  if (atMs === undefined) return undefined;
  return Math.min(Math.max(atMs - now, 0), RETRY_AFTER_MAX_MS);
}
