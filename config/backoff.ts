/**
 * The one backoff of lifeboat: full-jitter exponential, used by the crawl's retry loop
 * (crawler/fetch/retry-policy.ts) and by uploads (storage/upload/), each with its own constants.
 */
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
