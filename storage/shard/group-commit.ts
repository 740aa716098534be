/**
 * Group commit (ARCHITECTURE.md "Durable"), the ShardRecorder's engine: an ID becomes final only in the
 * transaction that follows the fsync covering its records.
 */
import type { ShardDb } from './shard-db.js';
import { SeenFilter } from './seen-filter.js';
import type { RevisitTarget, WarcWriter } from '../warc/warc-writer.js';

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
  #onFailed: ((err: Error) => void)[] = [];
  #finalIds: number[] = [];
  #running: Promise<void> = Promise.resolve();
  #failed: Error | undefined;
  #revisits = new Map<string, RevisitTarget>();
  #committingRevisits = new Map<string, RevisitTarget>();
  readonly #seen: SeenFilter;

  constructor(
    private readonly writer: WarcWriter,
    private readonly db: ShardDb,
    private readonly onCommitted?: (ids: number[]) => void,
  ) {
    this.#seen = new SeenFilter(db.captureCount() + 100_000);
    for (const p of db.capturedPairs()) this.#seen.add(p.url, p.payload_digest);
  }

  /** Queues `op` for the next commit; `onFailed` hears if that commit fails. */
  add(op: CommitOp, finalId?: number, onFailed?: (err: Error) => void): void {
    this.#ops.push(op);
    if (onFailed) this.#onFailed.push(onFailed);
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

  /** fsync the WARC, then make the batch final in one transaction; resolves with the IDs it made final. */
  commit(): Promise<number[]> {
    const run = this.#running.then(async (): Promise<number[]> => {
      const failed = this.#onFailed;
      this.#onFailed = [];
      if (this.#failed) {
        for (const f of failed) f(this.#failed);
        throw this.#failed;
      }
      if (this.#ops.length === 0) return [];
      const ops = this.#ops;
      const ids = this.#finalIds;
      this.#ops = [];
      this.#finalIds = [];
      this.#committingRevisits = this.#revisits;
      this.#revisits = new Map();
      const after: (() => void)[] = [];
      try {
        await this.writer.flush();
        this.db.transaction(() => {
          for (const op of ops) {
            const then = op();
            if (then) after.push(then);
          }
        });
      } catch (err) {
        for (const f of failed) f(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
      this.#committingRevisits = new Map();
      if (ids.length > 0) this.onCommitted?.(ids);
      for (const then of after) then();
      return ids;
    });
    // A failed commit fails its caller and every later one (the writer stays broken).
    this.#running = run.then(
      () => undefined,
      (err: unknown) => {
        this.#failed ??= err instanceof Error ? err : new Error(String(err));
      },
    );
    return run;
  }
}
