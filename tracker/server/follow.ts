import { errorMessage } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import type { Logger } from '../../config/logger.js';
import { RECHECK_DEFAULTS, defaultConfirmMs, describeVerdict, judgeLatest, recheckable, type LatestState, type LatestVerdict, type RecheckOptions } from '../../config/live-edge.js';
import type { ItemStore, SeedResult } from '../store/item-store.js';
import type { RecheckRequest } from '../store/rules.js';

/**
 * A project's `follow: {every_secs}` (issue 14): the platform keeps publishing, so the tracker asks
 * its discover endpoint for the highest ID every few seconds and turns what is new into items.
 *
 * The live edge (issue 21 §1, the rules in config/live-edge.ts, shared with `crawl --follow`):
 * - A jump far above the trend (`follow.max_step`, default derived from the recent growth per poll)
 *   is logged and held until a later poll confirms it, `follow.confirm_secs` after it was first seen
 *   (every poll in between answering at least as high): a glitch lasting two polls is not accepted.
 * - What is accepted joins the *frontier*: ID ranges announced but not yet items. The frontier is
 *   one small setting (`follow_edge`, a few ranges), never rows: items are cut from it in bounded
 *   chunks (`chunkItems` items) only when the queue runs low, on a poll or when a claim finds
 *   nothing queued. So an accepted 10^15 costs one chunk per chunk of work claimed, every request
 *   (stats, register, claim, heartbeat) keeps answering, and a restart reads the frontier back
 *   instead of seeding again.
 * - Each range a poll accepts after the first answer is noted with its time (`noteAccepted`, a
 *   row per poll, not per ID): a `missing` ID younger than `recheck.ageMs` is asked again even
 *   outside the window, on any tracker process, after a restart too.
 * - Each chunk is the store's `seedNew` (IDs an item already holds are skipped, seeds are
 *   serialised), so a chunk repeated after a crash (seeded, but the frontier not yet saved) or by a
 *   second tracker process never doubles an ID.
 */

/** The logger the follower reports to (config/logger.ts). */
export type FollowLog = Pick<Logger, 'info' | 'warn'>;

export interface FollowSeederOptions {
  store: ItemStore;
  /** Asks the platform for its highest ID now (the profile's `ids.discover`); injected by the caller. */
  discover: () => Promise<number>;
  /** IDs per seeded item (the project's item_size). */
  itemSize: number;
  /** The poll interval (`follow.every_secs` × 1000). */
  everyMs: number;
  /** The lowest ID of the platform; default 1. */
  firstId?: number;
  /** `follow.max_step`: the largest jump accepted without a confirming poll; default derived from the trend. */
  maxStep?: number | undefined;
  /** `follow.confirm_secs` × 1000: how long a held jump must be seen before it is accepted; default `defaultConfirmMs(everyMs)`. */
  confirmMs?: number | undefined;
  /** Items cut from the frontier at a time, and the queue's low-water mark; default DEFAULT_CHUNK_ITEMS. */
  chunkItems?: number;
  /** `follow.recheck`: a `missing` ID near the edge is asked again; default RECHECK_DEFAULTS. */
  recheck?: Partial<RecheckOptions>;
  /** The project's claim order: `newest` cuts from the top of the frontier, `oldest` from the bottom. */
  order?: 'newest' | 'oldest';
  log: FollowLog;
  /** The clock (ms since the epoch); default Date.now. */
  now?: () => number;
}

/** Items cut from the frontier at a time (and the queued items below which the next chunk is cut). */
export const DEFAULT_CHUNK_ITEMS = 1000;

/** The settings key of the live edge's state. */
export const FOLLOW_EDGE_KEY = 'follow_edge';

/** What the tracker keeps of the live edge (JSON in one setting). */
export interface FollowEdge extends LatestState {
  /** IDs accepted but not yet cut into items. */
  frontier: [number, number][];
}

export type PollOutcome =
  | { kind: 'seeded'; highest: number; seed: SeedResult }
  | { kind: 'unchanged'; highest: number }
  | { kind: 'backwards'; highest: number; answered: number }
  | { kind: 'held'; highest: number; answered: number }
  | { kind: 'failed'; highest: number; error: string };

/** The follow block of /api/v1/stats. */
export interface FollowStatus {
  highest: number;
  held: number | null;
  frontierIds: number;
}

const NOTHING: SeedResult = { items: 0, ids: 0, skipped: 0 };

export class FollowSeeder {
  readonly #o: FollowSeederOptions;
  #edge: FollowEdge = { highest: 0, steps: [], frontier: [] };
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = false;
  /** Polls and chunk cuts run one at a time (a claim may ask for a chunk during a poll). */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(options: FollowSeederOptions) {
    this.#o = options;
  }

  get highest(): number {
    return this.#edge.highest;
  }

  /** What /api/v1/stats shows (as of the last poll or cut). */
  status(): FollowStatus {
    return { highest: this.#edge.highest, held: this.#edge.held ?? null, frontierIds: RangeSet.fromJSON(this.#edge.frontier).size };
  }

  get #recheck(): RecheckOptions {
    return { ...RECHECK_DEFAULTS, ...this.#o.recheck };
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  /**
   * What a `done` or `fail` reporting `missing` IDs asks the store to recheck (issue 21 §1): those
   * within `recheck.window` of the highest accepted ID, or accepted by a poll less than
   * `recheck.ageMs` ago (config/live-edge.ts `recheckable`), with the project's attempts and delay;
   * undefined when there are none (their `missing` is final at once).
   */
  async recheckOf(missing: RangeSet): Promise<RecheckRequest | undefined> {
    const policy = this.#recheck;
    if (policy.attempts === 0 || missing.isEmpty) return undefined;
    const now = this.#now();
    const accepted = policy.ageMs > 0 ? await this.#o.store.acceptedSince(now - policy.ageMs) : [];
    const ids = recheckable(missing, { highest: this.#edge.highest, accepted }, now, policy);
    return ids.isEmpty ? undefined : { ids, policy: { attempts: policy.attempts, delayMs: policy.delayMs } };
  }

  /** Whether IDs are accepted but not yet items (as of the last poll or cut). */
  get hasFrontier(): boolean {
    return this.#edge.frontier.length > 0;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(fn, fn);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  /** Reads the edge back (another tracker process, or this one before a restart, may have moved it). */
  async #load(): Promise<void> {
    const text = await this.#o.store.getSetting(FOLLOW_EDGE_KEY);
    if (!text) return;
    const stored = JSON.parse(text) as FollowEdge;
    this.#edge = stored.highest >= this.#edge.highest ? stored : { ...this.#edge, frontier: stored.frontier };
  }

  async #save(): Promise<void> {
    await this.#o.store.setSetting(FOLLOW_EDGE_KEY, JSON.stringify(this.#edge));
  }

  /**
   * One poll: judges the answer (config/live-edge.ts), adds what is accepted to the frontier, then
   * cuts a chunk of items if the queue is low.
   */
  pollOnce(): Promise<PollOutcome> {
    return this.#serial(() => this.#poll());
  }

  async #poll(): Promise<PollOutcome> {
    const { discover, firstId = 1, log } = this.#o;
    let answered: number;
    try {
      await this.#load();
      answered = await discover();
    } catch (err) {
      const error = errorMessage(err);
      log.warn(`follow: discovering the latest ID failed (asking again in ${this.#o.everyMs / 1000} s): ${error}`);
      return { kind: 'failed', highest: this.#edge.highest, error };
    }
    const before = this.#edge.highest;
    const { state, verdict } = judgeLatest(this.#edge, answered, { maxStep: this.#o.maxStep, confirmMs: this.#o.confirmMs ?? defaultConfirmMs(this.#o.everyMs), now: this.#now() });
    const said = describeVerdict(verdict);
    if (said) (verdict.kind === 'confirmed' ? log.info : log.warn)(`follow: ${said}`, { answered, highest: state.highest });
    let frontier = RangeSet.fromJSON(this.#edge.frontier);
    if (state.highest > before) frontier = frontier.union(new RangeSet([{ start: before === 0 ? firstId : before + 1, end: state.highest }]));
    const changed = state.highest !== before || state.held !== this.#edge.held || state.heldAt !== this.#edge.heldAt;
    this.#edge = { ...state, frontier: frontier.toJSON() };
    try {
      // New IDs after the first answer get an age: noted before the edge is saved, so a crash
      // between the two notes them again (younger, never without an age).
      const { ageMs } = this.#recheck;
      if (before > 0 && state.highest > before && ageMs > 0) {
        const at = this.#now();
        await this.#o.store.noteAccepted({ ids: new RangeSet([{ start: before + 1, end: state.highest }]), at, forgetUpTo: at - ageMs });
      }
      if (changed) await this.#save();
      const seed = await this.#cut();
      return this.#outcome(verdict, answered, seed);
    } catch (err) {
      const error = errorMessage(err);
      log.warn(`follow: seeding IDs up to ${this.#edge.highest} failed (trying again in ${this.#o.everyMs / 1000} s): ${error}`);
      return { kind: 'failed', highest: this.#edge.highest, error };
    }
  }

  #outcome(verdict: LatestVerdict, answered: number, seed: SeedResult): PollOutcome {
    const highest = this.#edge.highest;
    if (seed.items > 0 || seed.skipped > 0 || ['first', 'grew', 'confirmed'].includes(verdict.kind)) return { kind: 'seeded', highest, seed };
    if (verdict.kind === 'backwards') return { kind: 'backwards', highest, answered };
    if (verdict.kind === 'held' || verdict.kind === 'holding') return { kind: 'held', highest, answered };
    return { kind: 'unchanged', highest };
  }

  /**
   * Cuts one chunk of items from the frontier if fewer than a chunk of post items are queued (a
   * claim that found nothing calls it, then claims again). Resolves with what was seeded.
   */
  topUp(): Promise<SeedResult> {
    return this.#serial(async () => {
      await this.#load();
      return this.#cut();
    });
  }

  async #cut(): Promise<SeedResult> {
    const { store, itemSize, log, order = 'oldest', chunkItems = DEFAULT_CHUNK_ITEMS } = this.#o;
    if (this.#edge.frontier.length === 0) return NOTHING;
    const queued = await store.claimableIdItems(this.#now());
    if (queued >= chunkItems) return NOTHING;
    const frontier = RangeSet.fromJSON(this.#edge.frontier);
    const chunk = takeIds(frontier, chunkItems * itemSize, order);
    const seed = await store.seedNew(chunk, itemSize);
    this.#edge = { ...this.#edge, frontier: frontier.subtract(chunk).toJSON() };
    await this.#save();
    if (seed.ids > 0) {
      const left = frontier.size - chunk.size;
      log.info(`follow: seeded ${seed.ids} new IDs (${chunk.format()}) in ${seed.items} items${left > 0 ? `; ${left} more wait in the frontier` : ''}`, { highest: this.#edge.highest, ...seed, frontier: left });
    }
    return seed;
  }

  /** Polls now, then every `everyMs` until `stop()`; a poll never overlaps the previous one. */
  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      this.#running = this.pollOnce().finally(() => {
        this.#running = undefined;
        if (!this.#stopped) {
          this.#timer = setTimeout(tick, this.#o.everyMs);
          this.#timer.unref();
        }
      });
    };
    tick();
  }

  /** Stops polling; resolves once a poll in flight has finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running?.catch(() => undefined);
    await this.#chain;
  }
}

/** The first (`oldest`) or last (`newest`) `count` IDs of `ids`, without listing them. */
export function takeIds(ids: RangeSet, count: number, order: 'newest' | 'oldest'): RangeSet {
  const out: { start: number; end: number }[] = [];
  let left = count;
  const ranges = order === 'oldest' ? ids.ranges : [...ids.ranges].reverse();
  for (const r of ranges) {
    if (left <= 0) break;
    const n = Math.min(left, r.end - r.start + 1);
    out.push(order === 'oldest' ? { start: r.start, end: r.start + n - 1 } : { start: r.end - n + 1, end: r.end });
    left -= n;
  }
  return new RangeSet(out);
}
