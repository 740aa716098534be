/**
 * The live edge of a followed platform (issue 21 §1): the pure rules that `crawl --follow` and the
 * tracker's `follow:` share, so both judge a `latest` answer and a lagging ID the same way.
 *
 * 1. A jump far above the trend is held, not seeded. `judgeLatest` takes what was seen and the new
 *    answer. Growth within `maxStep` of the highest accepted ID is accepted at once; a larger jump
 *    is held until a later poll confirms it (answers at least as high again), and only once it was
 *    seen for `confirmMs` (a glitch that lasts two polls a second apart is not confirmed by the
 *    second); every poll in between must answer at least as high. A held jump that the
 *    next answers do not confirm is dropped. `maxStep` is the project's `follow.max_step` /
 *    `--follow-max-step`, or by default `STEP_MULTIPLE` times the largest recent growth per poll,
 *    never below `STEP_FLOOR`.
 *
 * 2. IDs announced before they are readable. A `missing` answer (HTTP 404) for an ID within
 *    `window` IDs of the highest accepted one, or younger than `ageMs`, is not final at once
 *    (`recheckable`): it is asked again after `recheckDelayMs(attempt)` (spaced, growing), up to
 *    `attempts` times; after that it is final. An ID's age is the time since the poll that
 *    accepted it (an `AcceptedRange`); the IDs of the first answer (the range a follow starts
 *    from) have no age, only the window applies to them. A curator may still re-queue
 *    final-missing IDs on purpose (`tracker seed --recheck missing`, `crawl --recheck missing`).
 */

import { RangeSet } from './id-ranges.js';

/** The default `max_step` is never below this many IDs. */
export const STEP_FLOOR = 1000;
/** The default `max_step`: this many times the largest growth per poll among the recent ones. */
export const STEP_MULTIPLE = 10;
/** How many recent growth steps the default `max_step` looks at. */
export const STEP_HISTORY = 20;

export interface LatestState {
  /** The highest accepted ID (0: none yet). */
  highest: number;
  /** The most recent growth steps (IDs per poll), oldest first, at most STEP_HISTORY. */
  steps: number[];
  /** A jump seen once and held until a later poll confirms it. */
  held?: number;
  /** When the held jump was first seen (ms since the epoch). */
  heldAt?: number;
}

export type LatestVerdict =
  /** The first answer: the baseline, accepted as it is. */
  | { kind: 'first'; highest: number }
  | { kind: 'grew'; from: number; highest: number }
  | { kind: 'unchanged'; highest: number }
  | { kind: 'backwards'; highest: number; answered: number }
  /** A jump above `highest + maxStep`: held, nothing accepted (yet). */
  | { kind: 'held'; highest: number; answered: number; maxStep: number }
  /** A held jump answered again, but not yet seen for `confirmMs` (`waitMs` more): still held. */
  | { kind: 'holding'; highest: number; held: number; waitMs: number }
  /** A held jump confirmed by this answer: `highest` is the new accepted ID. */
  | { kind: 'confirmed'; from: number; highest: number }
  /** A held jump the answer did not confirm (dropped); `highest` may still have grown within the trend. */
  | { kind: 'dropped'; from: number; highest: number; held: number };

export interface JudgeOptions {
  /** A fixed `max_step` (the setting); undefined: derived from the recent steps. */
  maxStep?: number | undefined;
  /** How long a held jump must be seen before a poll may confirm it (`follow.confirm_secs`); default 0: the next poll may. */
  confirmMs?: number | undefined;
  /** The time of this answer (ms since the epoch); default Date.now(). */
  now?: number | undefined;
}

/** The default `confirmMs` never goes below this. */
export const CONFIRM_FLOOR_MS = 60_000;

/**
 * The default time a jump must be seen before it is accepted: three polls, at least a minute. A
 * glitch of a few seconds (a cache serving a wrong answer, a deploy) is seen by one or two polls
 * at most; a real jump waits a few polls, then joins the frontier.
 */
export function defaultConfirmMs(everyMs: number): number {
  return Math.max(CONFIRM_FLOOR_MS, 3 * everyMs);
}

/** The largest jump accepted without confirmation. */
export function maxStepOf(state: Pick<LatestState, 'steps'>, options: JudgeOptions = {}): number {
  if (options.maxStep !== undefined) return options.maxStep;
  const recent = state.steps.length > 0 ? Math.max(...state.steps) : 0;
  return Math.max(STEP_FLOOR, STEP_MULTIPLE * recent);
}

function grown(state: LatestState, to: number): LatestState {
  const steps = [...state.steps, to - state.highest].slice(-STEP_HISTORY);
  return { highest: to, steps };
}

/**
 * Judges one `latest` answer against what was seen; returns the verdict and the state to keep.
 * Pure: the caller logs the verdict and seeds/crawls `from + 1 .. highest` when it grew.
 */
export function judgeLatest(state: LatestState, answered: number, options: JudgeOptions = {}): { state: LatestState; verdict: LatestVerdict } {
  if (state.highest === 0) {
    if (answered <= 0) return { state, verdict: { kind: 'unchanged', highest: 0 } };
    return { state: { highest: answered, steps: [] }, verdict: { kind: 'first', highest: answered } };
  }
  const maxStep = maxStepOf(state, options);
  const now = options.now ?? Date.now();
  if (state.held !== undefined) {
    if (answered >= state.held) {
      // Seen again, but not for long enough yet (a held jump from before heldAt was kept counts from now).
      const heldAt = state.heldAt ?? now;
      const waitMs = (options.confirmMs ?? 0) - (now - heldAt);
      if (waitMs > 0) return { state: { ...state, heldAt }, verdict: { kind: 'holding', highest: state.highest, held: state.held, waitMs } };
      // Confirmed: accept the held value; an answer far above it again is a new jump to hold.
      const next = grown(state, state.held);
      if (answered - state.held > maxStepOf(next, options)) {
        return { state: { ...next, held: answered, heldAt: now }, verdict: { kind: 'confirmed', from: state.highest, highest: state.held } };
      }
      return { state: grown(state, answered), verdict: { kind: 'confirmed', from: state.highest, highest: answered } };
    }
    // Not confirmed: the held value is dropped and this answer judged on its own.
    const again = judgeLatest({ highest: state.highest, steps: state.steps }, answered, options);
    const highest = again.state.highest;
    if (again.verdict.kind === 'held') return again;
    return { state: again.state, verdict: { kind: 'dropped', from: state.highest, highest, held: state.held } };
  }
  if (answered < state.highest) return { state, verdict: { kind: 'backwards', highest: state.highest, answered } };
  if (answered === state.highest) return { state, verdict: { kind: 'unchanged', highest: state.highest } };
  if (answered - state.highest > maxStep) {
    return { state: { ...state, held: answered, heldAt: now }, verdict: { kind: 'held', highest: state.highest, answered, maxStep } };
  }
  return { state: grown(state, answered), verdict: { kind: 'grew', from: state.highest, highest: answered } };
}

/** One line for the log, or undefined when there is nothing to say. */
export function describeVerdict(v: LatestVerdict): string | undefined {
  switch (v.kind) {
    case 'held':
      return `the platform's latest ID jumped to ${v.answered}, more than ${v.maxStep} above ${v.highest} (the trend): held until a later poll confirms it`;
    case 'confirmed':
      return `the jump to ${v.highest} was confirmed by a later poll`;
    case 'dropped':
      return `the jump to ${v.held} was not confirmed (the platform now answers ${v.highest}): dropped`;
    case 'backwards':
      return `the platform's latest ID went backwards (${v.answered} < ${v.highest}); keeping ${v.highest}`;
    default:
      return undefined;
  }
}

export interface RecheckOptions {
  /** A `missing` ID within this many IDs of the highest accepted one is asked again. Default 1000; 0: no window. */
  window: number;
  /** How many times it is asked again before `missing` is final. Default 3. */
  attempts: number;
  /** The first recheck's delay; each later one waits twice as long. Default 60 s. */
  delayMs: number;
  /** A `missing` ID accepted by a poll less than this long ago is asked again too, wherever it lies. Default 10 min; 0: no age rule. */
  ageMs: number;
}

export const RECHECK_DEFAULTS: RecheckOptions = { window: 1000, attempts: 3, delayMs: 60_000, ageMs: 600_000 };

/** IDs a poll accepted (`start`..`end`) and when (`at`, ms since the epoch): where an ID's age is counted from. */
export interface AcceptedRange {
  start: number;
  end: number;
  at: number;
}

/** The IDs within `window` of the highest accepted ID (none before the first answer, or with window 0). */
export function edgeIds(highest: number, options: Pick<RecheckOptions, 'window'>): RangeSet {
  if (highest <= 0 || options.window <= 0) return new RangeSet();
  return new RangeSet([{ start: Math.max(1, highest - options.window + 1), end: Number.MAX_SAFE_INTEGER }]);
}

/** The IDs accepted less than `ageMs` before `now` (none with ageMs 0). */
export function youngIds(accepted: readonly AcceptedRange[], now: number, options: Pick<RecheckOptions, 'ageMs'>): RangeSet {
  if (options.ageMs <= 0) return new RangeSet();
  return new RangeSet(accepted.filter((r) => now - r.at < options.ageMs).map(({ start, end }) => ({ start, end })));
}

/**
 * The IDs of `ids` whose `missing` is asked again: within `window` of the highest accepted ID, or
 * accepted less than `ageMs` before `now`. Pure: the tracker (on a node's `done` or `fail`) and
 * `crawl --follow` (before each round) ask it with what they keep of the edge.
 */
export function recheckable(ids: RangeSet, edge: { highest: number; accepted: readonly AcceptedRange[] }, now: number, options: Pick<RecheckOptions, 'window' | 'ageMs'>): RangeSet {
  return ids.intersect(edgeIds(edge.highest, options).union(youngIds(edge.accepted, now, options)));
}

/** The accepted ranges that can still make an ID young at `now` (the rest are forgotten). */
export function keepYoung(accepted: readonly AcceptedRange[], now: number, options: Pick<RecheckOptions, 'ageMs'>): AcceptedRange[] {
  return options.ageMs > 0 ? accepted.filter((r) => now - r.at < options.ageMs) : [];
}

/**
 * When a `missing` ID near the edge is asked again: `attempt` is how many rechecks it has had
 * (0 for the first). Undefined when it has had them all (its `missing` is final).
 */
export function recheckDelayMs(attempt: number, options: Pick<RecheckOptions, 'attempts' | 'delayMs'>): number | undefined {
  if (attempt >= options.attempts) return undefined;
  return options.delayMs * 2 ** attempt;
}
