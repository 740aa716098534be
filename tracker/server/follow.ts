import { errorMessage } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import type { Logger } from '../../config/logger.js';
import type { ItemStore, SeedResult } from '../store/item-store.js';

/**
 * A project's `follow: {every_secs}` (issue 14): the platform keeps publishing, so the tracker asks
 * its discover endpoint for the highest ID every few seconds and seeds what is new as items. The
 * seeding is the store's `seedNew` (the guard rails of `tracker seed`: IDs an item already holds are
 * skipped, seeds are serialised), so a poll repeated after a crash or by a second tracker process
 * never doubles an ID. The range only grows: a discover that fails or answers lower than before is
 * logged and asked again at the next tick.
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
  log: FollowLog;
}

export type PollOutcome =
  | { kind: 'seeded'; highest: number; seed: SeedResult }
  | { kind: 'unchanged'; highest: number }
  | { kind: 'backwards'; highest: number; answered: number }
  | { kind: 'failed'; highest: number; error: string };

export class FollowSeeder {
  readonly #o: FollowSeederOptions;
  /** The highest ID seeded so far by this seeder (0: none yet). It never goes down. */
  #highest = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = false;

  constructor(options: FollowSeederOptions) {
    this.#o = options;
  }

  get highest(): number {
    return this.#highest;
  }

  /**
   * One poll. The first successful one seeds `firstId..highest` (idempotent: what the project holds
   * already is skipped); later ones only the IDs above the highest seen.
   */
  async pollOnce(): Promise<PollOutcome> {
    const { store, discover, itemSize, firstId = 1, log } = this.#o;
    let answered: number;
    try {
      answered = await discover();
    } catch (err) {
      const error = errorMessage(err);
      log.warn(`follow: discovering the latest ID failed (asking again in ${this.#o.everyMs / 1000} s): ${error}`);
      return { kind: 'failed', highest: this.#highest, error };
    }
    if (answered < this.#highest) {
      log.warn(`follow: the platform's latest ID went backwards (${answered} < ${this.#highest}); keeping ${this.#highest}`);
      return { kind: 'backwards', highest: this.#highest, answered };
    }
    if (answered === this.#highest || answered < firstId) return { kind: 'unchanged', highest: this.#highest };
    const from = this.#highest === 0 ? firstId : this.#highest + 1;
    let seed: SeedResult;
    try {
      seed = await store.seedNew(new RangeSet([{ start: from, end: answered }]), itemSize);
    } catch (err) {
      const error = errorMessage(err);
      log.warn(`follow: seeding IDs ${from}-${answered} failed (trying again in ${this.#o.everyMs / 1000} s): ${error}`);
      return { kind: 'failed', highest: this.#highest, error };
    }
    this.#highest = answered;
    if (seed.ids > 0) log.info(`follow: seeded ${seed.ids} new IDs up to ${answered} in ${seed.items} items`, { highest: answered, ...seed });
    return { kind: 'seeded', highest: answered, seed };
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
  }
}
