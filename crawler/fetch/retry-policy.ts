import { setTimeout as sleep } from 'node:timers/promises';
import { backoffMs } from '../../config/backoff.js';
import { LifeboatError } from '../../config/errors.js';

/**
 * Retry rules as data (ARCHITECTURE.md "One ID": 429, 5xx, resets, timeouts and truncated bodies are retried
 * with backoff; 404/410/401/403/451 are final), and the one retry loop that applies them for the
 * HTTP fetcher and the browser fetcher alike (`retrying`).
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
  signal?: AbortSignal;
  onRetry?: (reason: string) => void;
  /** The error to throw when every attempt failed (`last` is the last attempt's). */
  giveUp: (last: Error, attempts: number) => Error;
}

/**
 * Runs `attempt(n)` for n = 1… until it gives a result, throws, or `maxAttempts` failed; waits
 * between attempts the longer of the server's Retry-After and the backoff. Resolves with the
 * result and the attempt that gave it.
 */
export async function retrying<T>(o: RetryLoopOptions, attempt: (n: number) => Promise<AttemptOutcome<T>>): Promise<{ value: T; attempts: number }> {
  const wait = (ms: number): Promise<void> => sleep(ms, undefined, o.signal ? { signal: o.signal } : undefined);
  let last: Error | undefined;
  let downSince: number | undefined;
  let downWaits = 0;
  for (let n = 1; n <= o.maxAttempts; n++) {
    o.signal?.throwIfAborted();
    const out = await attempt(n);
    if ('ok' in out) return { value: out.ok, attempts: n };
    last = out.retry;
    o.onRetry?.(last.message);
    if (out.hostDown) {
      downSince ??= Date.now();
      if (Date.now() - downSince < (o.maxOutageMs ?? 0)) {
        // The host is down: wait for it without using up an attempt.
        n--;
        downWaits++;
        await wait(Math.min(10_000, backoffMs(downWaits, { baseMs: o.backoffBaseMs })));
        continue;
      }
    } else downSince = undefined;
    if (n < o.maxAttempts) await wait(Math.max(out.waitMs ?? 0, backoffMs(n, { baseMs: o.backoffBaseMs })));
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
