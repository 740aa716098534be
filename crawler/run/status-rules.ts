import { setTimeout as sleep } from 'node:timers/promises';
import type { StatusConfig, StatusRule } from '../../config/profile.js';
import type { IdStatus } from '../../config/id-status.js';
import { jsonNesting, MAX_JSON_PARSE_DEPTH } from '../extract/extract-bounds.js';
import { jsonPathQuery } from '../extract/json-path.js';
import { backoffMs } from '../../config/retry.js';

/**
 * An ID's status from its primary response (profile `status`): the rules first, in order — an HTTP
 * status plus a JSONPath condition on the body or a body pattern — then the status lists, then
 * `missing_body`. A rule may say `retry`: the platform said "not now" in a body (Lemmy's 400
 * `rate_limit_error`, MediaWiki's `ratelimited`), so the response is fetched again after a pause
 * that holds back every ID of the part (`RateLimitGate`), and the ID is `failed` (tried again by
 * the next run) when attempts run out.
 */
export type StatusDecision =
  | { kind: 'final'; status: IdStatus; /** The rule that decided, e.g. `status.rules[0]`. */ rule?: string; /** Why, for ids.last_error when failed. */ reason?: string }
  | { kind: 'retry'; rule: string; reason: string };

export interface PrimaryResponse {
  code: number;
  /** The decoded body (what extraction read); undefined when there is none or it could not be decoded. */
  text: string | undefined;
}

const NOT_PARSED = Symbol('not parsed');

/** Decides an ID's status from its primary response. Pure; never throws for what a body holds. */
export function decideStatus(config: StatusConfig, response: PrimaryResponse): StatusDecision {
  let doc: unknown = NOT_PARSED;
  let parsed = false;
  const json = (): unknown => {
    if (!parsed) {
      parsed = true;
      doc = parseJson(response.text);
    }
    return doc;
  };
  for (const rule of config.rules) {
    if (!matches(rule, response, json)) continue;
    const what = describeRule(rule);
    if (rule.then === 'retry') return { kind: 'retry', rule: rule.at, reason: `HTTP ${response.code} ${what} (${rule.at}: retry)` };
    return rule.then === 'failed' ? { kind: 'final', status: 'failed', rule: rule.at, reason: `HTTP ${response.code} ${what} (${rule.at})` } : { kind: 'final', status: rule.then, rule: rule.at };
  }
  const code = response.code;
  const listed: IdStatus | undefined = config.archived.includes(code)
    ? 'archived'
    : config.missing.includes(code)
      ? 'missing'
      : config.gone.includes(code)
        ? 'gone'
        : config.restricted.includes(code)
          ? 'restricted'
          : undefined;
  if (listed === undefined) return { kind: 'final', status: 'failed', reason: `unexpected HTTP ${code}` };
  if (listed === 'archived' && response.text !== undefined && config.missingBodies.includes(response.text.trim())) return { kind: 'final', status: 'missing' };
  return { kind: 'final', status: listed };
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined || jsonNesting(text, MAX_JSON_PARSE_DEPTH) > MAX_JSON_PARSE_DEPTH) return NOT_PARSED;
  try {
    return JSON.parse(text);
  } catch {
    return NOT_PARSED;
  }
}

function matches(rule: StatusRule, response: PrimaryResponse, json: () => unknown): boolean {
  if (rule.codes && !rule.codes.includes(response.code)) return false;
  if (rule.body && (response.text === undefined || !rule.body.test(response.text))) return false;
  if (rule.json === undefined) return true;
  const doc = json();
  if (doc === NOT_PARSED) return false;
  let values: unknown[];
  try {
    values = jsonPathQuery(doc, rule.json, 10_000);
  } catch {
    return false;
  }
  if (rule.equals) return values.some((v) => rule.equals!.some((e) => e === v));
  const present = values.some((v) => v !== null && v !== undefined);
  return rule.exists === false ? !present : present;
}

function describeRule(rule: StatusRule): string {
  const parts: string[] = [];
  if (rule.json !== undefined) {
    if (rule.equals) parts.push(`${rule.json} = ${rule.equals.map((e) => JSON.stringify(e)).join(' | ')}`);
    else parts.push(`${rule.json} ${rule.exists === false ? 'absent' : 'present'}`);
  }
  if (rule.body) parts.push(`body ~ /${rule.body.source}/`);
  return parts.join(', ') || 'matched';
}

/**
 * A pause shared by the IDs of a part: when one response says "rate limited", every request that
 * waits here holds back until the pause is over (a longer pause asked later extends it).
 */
export class RateLimitGate {
  #until = 0;

  pause(ms: number, now = Date.now()): void {
    this.#until = Math.max(this.#until, now + ms);
  }

  /** Milliseconds left of the pause. */
  remainingMs(now = Date.now()): number {
    return Math.max(0, this.#until - now);
  }

  async wait(signal?: AbortSignal): Promise<void> {
    for (let left = this.remainingMs(); left > 0; left = this.remainingMs()) {
      await sleep(left, undefined, signal ? { signal } : undefined);
    }
  }
}

/**
 * The wait before attempt `attempt + 1` after a `retry` verdict: the one backoff with equal jitter
 * (half fixed, half random), so a rate limit is always given at least half the ceiling to reset.
 */
export function rateLimitBackoffMs(attempt: number, opts: { baseMs?: number; maxMs?: number; random?: () => number } = {}): number {
  return backoffMs(attempt, { baseMs: 500, ...opts, jitter: 'equal' });
}

export interface StatusRetryOptions<T> {
  /** One fetch of the primary (with the fetcher's own retries of 429/5xx inside). */
  attempt: () => Promise<T>;
  decide: (result: T) => StatusDecision;
  /** Frees what a result holds (its spooled body) when a retry replaces it. */
  discard: (result: T) => Promise<void>;
  maxAttempts: number;
  gate: RateLimitGate;
  /** The wait the answer itself asks for (Retry-After, as MediaWiki sends with `maxlag`): the pause is at least this. */
  retryAfterMs?: (result: T) => number | undefined;
  backoffBaseMs?: number;
  signal?: AbortSignal;
  onRetry?: (decision: Extract<StatusDecision, { kind: 'retry' }>, attempt: number) => void;
}

/**
 * Fetches until the decision is final or `maxAttempts` answers said `retry` (then `failed`, naming
 * the rule). Only the last result is kept; the ones replaced are discarded, never archived.
 */
export async function fetchWithStatusRules<T>(o: StatusRetryOptions<T>): Promise<{ result: T; decision: Extract<StatusDecision, { kind: 'final' }>; attempts: number }> {
  for (let attempt = 1; ; attempt++) {
    await o.gate.wait(o.signal);
    const result = await o.attempt();
    const decision = o.decide(result);
    if (decision.kind === 'final') return { result, decision, attempts: attempt };
    if (attempt >= o.maxAttempts) {
      return { result, decision: { kind: 'final', status: 'failed', rule: decision.rule, reason: `${decision.reason}: still so after ${attempt} attempts` }, attempts: attempt };
    }
    o.onRetry?.(decision, attempt);
    await o.discard(result);
    const backoff = rateLimitBackoffMs(attempt, o.backoffBaseMs !== undefined ? { baseMs: o.backoffBaseMs } : {});
    o.gate.pause(Math.max(backoff, o.retryAfterMs?.(result) ?? 0));
  }
}
