import { RangeSet } from '../../config/id-ranges.js';

/**
 * The ID frontier: the requested ranges minus what the shard already finished, walked lazily in
 * order, with related IDs (replies, reposts) found on the way served first when they are inside
 * the requested ranges and not yet visited. Memory is bounded by the number of ranges, not IDs.
 */
export interface FrontierSource {
  /** IDs already final in the shard, as ranges. */
  finalRanges(): Iterable<{ start: number; end: number }>;
  /** Pops up to `limit` related IDs queued by extraction. */
  takeRelated(limit: number): number[];
  /** True when the ID already has a final status. */
  isFinal(id: number): boolean;
}

export class Frontier {
  readonly #requested: RangeSet;
  readonly #todo: RangeSet;
  readonly #source: FrontierSource;
  readonly #issued = new Set<number>();

  constructor(requested: RangeSet, source: FrontierSource) {
    this.#requested = requested;
    this.#source = source;
    this.#todo = requested.subtract(new RangeSet(source.finalRanges()));
  }

  /** How many IDs this run has to visit (known at start). */
  get remaining(): number {
    return this.#todo.size;
  }

  get requested(): RangeSet {
    return this.#requested;
  }

  inScope(id: number): boolean {
    return this.#requested.has(id);
  }

  /** Yields IDs; related IDs jump the queue. An ID is yielded at most once per run. */
  *ids(): Generator<number> {
    const gen = this.#todo.ids();
    let cursor = -1;
    for (;;) {
      for (const id of this.#source.takeRelated(64)) {
        // Related IDs ahead of the cursor are served now and skipped later; behind it, they are done or failed.
        if (id > cursor && this.#requested.has(id) && !this.#issued.has(id) && !this.#source.isFinal(id)) {
          this.#issued.add(id);
          yield id;
        }
      }
      const next = gen.next();
      if (next.done) return;
      cursor = next.value;
      if (this.#issued.delete(cursor)) continue;
      yield cursor;
    }
  }
}
