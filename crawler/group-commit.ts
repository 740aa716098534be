/**
 * Group commit for the crawl loop (DESIGN.md §7): an ID becomes final only in the transaction
 * that follows the fsync covering its records.
 */
import type { ShardDb } from '../storage/shard-db.js';
import type { RevisitTarget, WarcWriter } from '../storage/warc-writer.js';
import { SeenFilter } from './seen-filter.js';

/**
 * The shard's own record of what the run found for one ID or URL, applied in one transaction.
 * It may return work to start once that transaction is done (fetching the media it queued).
 */
export type CommitOp = () => (() => void) | void;

/**
 * Group commit: ops wait until the WARC records they describe are fsynced, then apply in one
 * transaction. What is written but not yet committed (revisit targets, queued media URLs) is
 * looked up here first: the batch being committed stays visible until its transaction is done.
 */
export class GroupCommit {
  #ops: CommitOp[] = [];
  #finalIds: number[] = [];
  #running: Promise<void> = Promise.resolve();
  #revisits = new Map<string, RevisitTarget>();
  #committingRevisits = new Map<string, RevisitTarget>();
  readonly #seen: SeenFilter;

  constructor(
    private readonly writer: WarcWriter,
    private readonly db: ShardDb,
    private readonly onCommitted: ((ids: number[]) => void) | undefined,
  ) {
    this.#seen = new SeenFilter(db.captureCount() + 100_000);
    for (const p of db.capturedPairs()) this.#seen.add(p.url, p.payload_digest);
  }

  add(op: CommitOp, finalId?: number): void {
    this.#ops.push(op);
    if (finalId !== undefined) this.#finalIds.push(finalId);
  }

  rememberRevisit(url: string, digest: string, target: RevisitTarget): void {
    this.#revisits.set(`${digest} ${url}`, target);
    this.#seen.add(url, digest);
  }

  /**
   * An earlier record of this URL with this payload: written and not yet committed, or in the
   * shard. Parts (worker threads) see each other's records only once committed and only through
   * SQLite, and their filters hold only their own: a pair first written by another part during
   * this run is stored again in full, not as a revisit (never wrong, sometimes bigger).
   */
  lookupRevisit(url: string, digest: string): RevisitTarget | undefined {
    const key = `${digest} ${url}`;
    const pending = this.#revisits.get(key) ?? this.#committingRevisits.get(key);
    if (pending) return pending;
    return this.#seen.mayHave(url, digest) ? this.db.findRevisitTarget(url, digest) : undefined;
  }

  /** fsync the WARC, then make the batch final in one transaction. */
  commit(): Promise<void> {
    this.#running = this.#running.then(async () => {
      if (this.#ops.length === 0) return;
      const ops = this.#ops;
      const ids = this.#finalIds;
      this.#ops = [];
      this.#finalIds = [];
      this.#committingRevisits = this.#revisits;
      this.#revisits = new Map();
      await this.writer.flush();
      const after: (() => void)[] = [];
      this.db.transaction(() => {
        for (const op of ops) {
          const then = op();
          if (then) after.push(then);
        }
      });
      this.#committingRevisits = new Map();
      if (ids.length > 0) this.onCommitted?.(ids);
      for (const then of after) then();
    });
    return this.#running;
  }
}
