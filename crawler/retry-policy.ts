import { LifeboatError, RetryableFetchError } from '../config/errors.js';

/**
 * Retry rules as data (DESIGN §3: 429, 5xx, resets, timeouts and truncated bodies are retried
 * with backoff; 404/410/401/403/451 are final). The crawl loop decides *whether* with
 * `isRetryable` and *when* with `retryDelayMs`; it owns the attempt count and `max_attempts`.
 */

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

export function isRetryableStatus(status: number): boolean {
  return retryableStatuses.has(status);
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

export interface BackoffOptions {
  /** Upper bound of the first attempt's delay. Default 1,000 ms. */
  baseMs?: number;
  /** Upper bound of any delay. Default 60,000 ms. */
  maxMs?: number;
  /** Returns a number in [0, 1). Default `Math.random`; inject for deterministic tests. */
  random?: () => number;
}

/**
 * Exponential backoff with full jitter: a uniform delay in [0, min(maxMs, baseMs·2^(attempt−1))).
 * `attempt` is the number of the attempt that just failed, starting at 1.
 */
export function backoffMs(attempt: number, opts: BackoffOptions = {}): number {
  const { baseMs = 1000, maxMs = 60_000, random = Math.random } = opts;
  const exponent = Math.min(Math.max(Math.floor(attempt), 1) - 1, 52);
  const ceilingMs = Math.min(maxMs, baseMs * 2 ** exponent);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * ceilingMs);
}

/**
 * When to try a failed fetch again: the server's Retry-After when the error carries one
 * (`RetryableFetchError.retryAfterMs`), otherwise `backoffMs(attempt)`.
 */
export function retryDelayMs(err: unknown, attempt: number, opts: BackoffOptions = {}): number {
  if (err instanceof RetryableFetchError && err.retryAfterMs !== undefined) return err.retryAfterMs;
  return backoffMs(attempt, opts);
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
