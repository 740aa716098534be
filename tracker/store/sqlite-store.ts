import Database from 'better-sqlite3';
import { StorageError } from '../../config/errors.js';
import { randomUUID } from 'node:crypto';
import { RangeSet } from '../../config/id-ranges.js';
import type { AcceptedRange } from '../../config/live-edge.js';
import { type ClaimOptions, type ClaimResult, type DoneOptions, type HeartbeatOptions, type ItemStore, type LeaseLookup, type MediaCounts, type NodeRecord, type ReleaseOptions, type SeedResult, type TrackerStats, EVENT_RETENTION_MS } from './item-store.js';
import { type LeaseRow, type StorePolicy, NO_LIMITS, EXPIRED_REASON, applyFinished, checkLive, claimPriorities, cutPendingFirst, doneCredit, heldIds, isRepeatedDone, leaseOf, recheckItemOf, mediaRoom, nothingToClaim, packItems, parseStoredRanges, registrationDecision, remainderOf, retryAfterMsFor, seqsOf, stallBarBefore, storeError, storedRanges } from './rules.js';
import { SCHEMA_VERSION, addMissingColumnsSql, createTablesSql, INDEXES } from './schema.js';
import { type SqlName, type Stmt, SQL } from './sqlite-sql.js';
import { SqliteReports } from './sqlite-reports.js';
import { type MediaUrl, type ReportedMedia, DEFAULT_MEDIA_ITEM_SIZE, SeenUrls, mediaPriority, mediaToStore, seqFilter, seqRanges, uniqueMedia } from './media-urls.js';
import type { KindProgress } from './deadline.js';
import type { RatePoint } from './stats.js';

interface QueuedRow {
  id: number;
  ranges: string;
  finished: string;
  kind: string;
  priority: number;
  attempts: number;
  failures: number;
}

/**
 * The embedded store: one better-sqlite3 connection in WAL mode, statements prepared once. Every
 * transition is one IMMEDIATE transaction; the rules are rules.ts's, driver errors leave as
 * `storeError` makes them (the PostgreSQL store's shape); the read-only reports (and the rate
 * history's rollup) are sqlite-reports.ts's.
 */
export class SqliteItemStore implements ItemStore {
  readonly kind = 'sqlite' as const;
  readonly project: string;
  #db: Database.Database;
  #s: Partial<Record<SqlName, Stmt>> = {};
  #seen: SeenUrls;
  #policy: StorePolicy = { ...NO_LIMITS };
  readonly #reports: SqliteReports;

  /**
   * Opens (and owns) the database file at `path`; `close()` closes it. `seenCache`: URL hashes
   * kept in memory to turn repeated reports away (SeenUrls); 0 turns it off.
   */
  constructor(options: { path: string; project: string; seenCache?: number }) {
    this.project = options.project;
    this.#seen = new SeenUrls(options.seenCache);
    try {
      this.#db = new Database(options.path);
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = NORMAL');
      this.#db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new StorageError(`cannot open tracker database ${options.path}: ${(err as Error).message}`, { cause: err });
    }
    this.#reports = new SqliteReports({ project: this.project, stmt: (name) => this.#stmt(name), tx: (fn) => this.#tx(fn), run: (fn) => this.#do(fn) });
  }

  async init(): Promise<void> {
    this.#tx(() => {
      this.#db.exec(createTablesSql('sqlite'));
      const columns = (table: string) => new Set((this.#db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
      for (const alter of addMissingColumnsSql('sqlite', columns)) this.#db.exec(alter);
      for (const index of INDEXES) this.#db.exec(index);
      const row = this.#db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string } | undefined;
      if (row && Number(row.value) > SCHEMA_VERSION) {
        throw new StorageError(`tracker database schema ${row.value} is newer than this lifeboat (${SCHEMA_VERSION}); upgrade lifeboat`);
      }
      this.#db.prepare(`INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)`).run(String(SCHEMA_VERSION));
    });
    for (const [name, text] of Object.entries(SQL)) this.#s[name as SqlName] = this.#db.prepare(text);
  }

  setPolicy(policy: Partial<StorePolicy>): void {
    this.#policy = { ...this.#policy, ...policy };
  }

  #stmt(name: SqlName): Stmt {
    const s = this.#s[name];
    if (!s) throw new StorageError('the tracker store is not initialised; call init() first');
    return s;
  }

  /** Runs `fn` as one IMMEDIATE transaction; a driver error leaves as a StorageError. */
  #tx<T>(fn: () => T): T {
    try {
      return this.#db.transaction(fn).immediate();
    } catch (err) {
      throw storeError(err);
    }
  }

  /** Runs a single statement (or a read) outside a transaction, with errors wrapped as in #tx. */
  #do<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw storeError(err);
    }
  }

  async seed(items: Iterable<RangeSet>): Promise<{ items: number; ids: number }> {
    const insert = this.#stmt('insertItem');
    let count = 0;
    let ids = 0;
    const batch = (sets: RangeSet[]) =>
      this.#tx(() => {
        for (const set of sets) insert.run(this.project, storedRanges(set), set.size);
      });
    let pending: RangeSet[] = [];
    for (const set of items) {
      if (set.isEmpty) continue;
      pending.push(set);
      count++;
      ids += set.size;
      if (pending.length >= 50_000) {
        batch(pending);
        pending = [];
      }
    }
    if (pending.length > 0) batch(pending);
    return { items: count, ids };
  }

  async seedRecheck(ids: RangeSet, itemSize: number): Promise<{ items: number; ids: number }> {
    const insert = this.#stmt('insertRecheck');
    return this.#tx(() => {
      let items = 0;
      for (const set of packItems(ids, itemSize)) {
        insert.run(this.project, storedRanges(set), set.size, null, 0);
        items++;
      }
      return { items, ids: ids.size };
    });
  }

  async seedNew(ids: RangeSet, itemSize: number): Promise<SeedResult> {
    const insert = this.#stmt('insertItem');
    // One IMMEDIATE transaction: reading what is held and adding the rest cannot interleave with another seed.
    return this.#tx((): SeedResult => {
      const held = this.#stmt('heldRanges').pluck().iterate(this.project) as Iterable<string>;
      const fresh = ids.subtract(heldIds(held));
      let items = 0;
      for (const set of packItems(fresh, itemSize)) {
        insert.run(this.project, storedRanges(set), set.size);
        items++;
      }
      return { items, ids: fresh.size, skipped: ids.size - fresh.size };
    });
  }

  async listProjects(): Promise<string[]> {
    return this.#do(() => this.#stmt('projects').pluck().all() as string[]);
  }

  async registerNode({ nick, tokenHash, now }: { nick: string; tokenHash: string; now: number }): Promise<NodeRecord> {
    return this.#tx(() => {
      const owner = this.#stmt('nickOwner').get(this.project, nick) as { id: number; token_hash: string } | undefined;
      const decision = registrationDecision(
        {
          banned: this.#stmt('isBanned').get(this.project, nick) !== undefined,
          owner: owner && { id: owner.id, tokenHash: owner.token_hash },
          tokenUsed: this.#stmt('tokenUsed').get(this.project, tokenHash) !== undefined,
        },
        nick,
        tokenHash,
      );
      if ('existing' in decision) return { id: decision.existing, nick, banned: false };
      const info = this.#stmt('insertNode').run(this.project, nick, tokenHash, now);
      return { id: Number(info.lastInsertRowid), nick, banned: false };
    });
  }

  async authenticate(tokenHash: string): Promise<NodeRecord | undefined> {
    const row = this.#do(() => this.#stmt('auth').get(tokenHash, this.project) as { id: number; nick: string; banned: number } | undefined);
    return row ? { id: row.id, nick: row.nick, banned: row.banned === 1 } : undefined;
  }

  /** Ends overdue leases: run out, or no progress reported for the policy's stall time. */
  #expire(now: number): number {
    const p = { project: this.project, now, stallBefore: now - this.#policy.stallMs };
    this.#stmt('countStalled').run(p);
    this.#stmt('attemptExpired').run({ ...p, reason: EXPIRED_REASON });
    return this.#stmt('finishExpired').run(p).changes + this.#stmt('expire').run(p).changes;
  }

  async expireLeases(now: number): Promise<number> {
    return this.#tx(() => {
      this.#reports.rollup(now);
      this.#stmt('pruneEvents').run(this.project, now - EVENT_RETENTION_MS);
      return this.#expire(now);
    });
  }

  async rateHistory(options: { now: number; sinceMs: number }): Promise<RatePoint[]> {
    return this.#reports.rateHistory(options);
  }

  async extendLeases({ since, byMs }: { since: number; byMs: number }): Promise<number> {
    return this.#do(() => this.#stmt('extendLeases').run(byMs, this.project, since).changes);
  }

  async claim({ nodeId, now, leaseMs, only, order = 'oldest', mediaItemSize = DEFAULT_MEDIA_ITEM_SIZE }: ClaimOptions): Promise<ClaimResult> {
    const { lo, hi } = claimPriorities(only);
    return this.#tx((): ClaimResult => {
      const expired = this.#expire(now);
      const live = this.#stmt('liveLeases').get(this.project, nodeId) as { n: number; at: number | null };
      if (live.n >= this.#policy.maxLeasesPerNode) {
        this.#stmt('refuseClaim').run(nodeId);
        return { kind: 'later', retryAfterMs: retryAfterMsFor(live.at ?? now, now), capped: true, expired };
      }
      for (;;) {
        let row = this.#stmt(order === 'newest' ? 'nextQueuedNewest' : 'nextQueued').get(this.project, lo, hi, now, nodeId) as QueuedRow | undefined;
        if (only !== 'posts') {
          const pending = (this.#stmt('pendingMin').get(this.project) as { priority: number } | undefined)?.priority;
          if (cutPendingFirst(pending, row)) row = this.#cutMediaItem(pending, mediaItemSize);
        }
        // Nothing else claimable: an item this node stalled on, once the bar lifted (rules.ts stallBarBefore).
        row ??= this.#stmt(order === 'newest' ? 'ownStalledNewest' : 'ownStalled').get(this.project, lo, hi, now, nodeId, stallBarBefore(now, this.#policy)) as QueuedRow | undefined;
        if (!row) {
          const earliestExpiry = (this.#stmt('earliestExpiry').get(this.project, 0, hi) as { at: number | null }).at;
          const postsQueued = this.#stmt('queuedPosts').get(this.project) !== undefined;
          const barredSince = (this.#stmt('barredSince').get(this.project, nodeId, lo, hi) as { at: number | null }).at;
          return { ...nothingToClaim({ earliestExpiry, postsQueued, only, now, barredSince, stallMs: this.#policy.stallMs }), expired };
        }
        const leaseId = randomUUID();
        const leaseExpiresAt = now + leaseMs;
        this.#stmt('lease').run(leaseId, nodeId, leaseExpiresAt, now, row.id);
        const kept = row.kind === 'media' && row.attempts > 0 ? this.#giveUp(row, now) : row;
        if (!kept) continue; // every URL left was given up on: the item is done, take the next
        const urls = kept.kind === 'media' ? this.#urlsOf(remainderOf(kept)) : undefined;
        return { kind: 'lease', lease: leaseOf(kept, leaseId, leaseExpiresAt, urls), expired };
      }
    });
  }

  /** Cuts up to `size` pending URLs of one priority into a queued media item (inside a claim). */
  #cutMediaItem(priority: number, size: number): QueuedRow {
    const seqs = this.#stmt('pendingTake').pluck().all(this.project, priority, size) as number[];
    const ranges = seqRanges(seqs);
    const id = Number(this.#stmt('insertMediaItem').run(this.project, storedRanges(ranges), ranges.size, priority).lastInsertRowid);
    for (const seq of seqs) this.#stmt('assignSeq').run(id, seq);
    return { id, ranges: storedRanges(ranges), finished: '[]', kind: 'media', priority, attempts: 0, failures: 0 };
  }

  /**
   * A media item put back before, as it is leased again: its URLs put back `media.max_attempts`
   * times are `failed` (their reason stays in last_error) and count as finished. Returns the item
   * with what is left, or undefined when nothing is (the item is then done).
   */
  #giveUp(row: QueuedRow, now: number): QueuedRow | undefined {
    const left = remainderOf(row);
    const gone = (this.#stmt('givenUp').all(row.id, this.#policy.mediaMaxAttempts) as { seq: number }[]).map((g) => g.seq).filter((seq) => left.has(seq));
    if (gone.length === 0) return row;
    for (const seq of gone) this.#stmt('failUrl').run(now, seq);
    const after = parseStoredRanges(row.finished).union(seqRanges(gone));
    if (left.subtract(after).isEmpty) {
      this.#stmt('finishGivenUp').run(now, row.id);
      return undefined;
    }
    this.#stmt('giveUpProgress').run(storedRanges(after), after.size, row.id);
    return { ...row, finished: storedRanges(after) };
  }

  #urlsOf(ranges: RangeSet): MediaUrl[] {
    const { sql, values } = seqFilter(ranges, () => '?');
    return this.#db.prepare(`SELECT seq, url FROM media_urls WHERE project = ? AND (${sql}) ORDER BY seq`).all(this.project, ...values) as MediaUrl[];
  }

  /**
   * Inserts never-seen URLs (one statement each, the unique hash is the dedupe) inside the
   * caller's transaction, at most `room` of them (the rest `refused`); returns how many were new
   * and the hashes of those stored or known, to remember once it commits.
   */
  #insertMedia(media: readonly ReportedMedia[], requeue: boolean, room = Infinity): { fresh: number; refused: number; hashes: Buffer[] } {
    const { todo, hashes } = mediaToStore(this.project, media, this.#seen, requeue);
    let fresh = 0;
    let refused = 0;
    const kept: Buffer[] = [];
    todo.forEach((m, i) => {
      const hash = hashes[i]!;
      if (fresh >= room) {
        if (this.#stmt('mediaKnown').get(hash) === undefined) refused++;
        else kept.push(hash);
        return;
      }
      kept.push(hash);
      if (this.#stmt('insertMedia').run(this.project, hash, m.url, mediaPriority(m)).changes > 0) fresh++;
      else if (requeue) fresh += this.#stmt('requeueMedia').run(hash).changes;
    });
    return { fresh, refused, hashes: kept };
  }

  async queueMedia(media: readonly ReportedMedia[], options: { requeue?: boolean } = {}): Promise<{ queued: number; known: number }> {
    const { fresh, hashes } = this.#tx(() => this.#insertMedia(media, options.requeue ?? false));
    this.#seen.addAll(hashes);
    return { queued: fresh, known: uniqueMedia(media).length - fresh };
  }

  async mediaCounts(): Promise<MediaCounts> {
    return this.#reports.mediaCounts();
  }

  #byLease(leaseId: string): LeaseRow | undefined {
    return this.#stmt('byLease').get(leaseId, this.project) as LeaseRow | undefined;
  }

  /** Stores a report of finished sub-ranges on the item and credits the node; returns what is left. */
  #recordFinished(row: LeaseRow, finished: RangeSet, nodeId: number, now: number, expiresAt: number | null, mediaTaken = 0): RangeSet {
    const { after, added, remaining } = applyFinished(row, finished);
    const progressed = after.size > Number(row.finished_count) || mediaTaken > 0;
    this.#stmt('progress').run(storedRanges(after), after.size, expiresAt, progressed ? 1 : 0, now, row.id);
    if (added > 0) {
      this.#stmt('credit').run(added, 0, 0, now, nodeId);
      this.#stmt('event').run(this.project, now, nodeId, added, 0);
    }
    return remaining;
  }

  async heartbeat({ nodeId, leaseId, finished, now, leaseMs, media = [], mediaRefusedBefore = 0 }: HeartbeatOptions) {
    const { result, hashes } = this.#tx(() => {
      const row = checkLive(this.#byLease(leaseId), leaseId, nodeId, now);
      if (mediaRefusedBefore > 0) this.#stmt('refuseMedia').run(mediaRefusedBefore, nodeId);
      const leaseExpiresAt = now + leaseMs;
      const stored = media.length > 0 ? this.#reportMedia(row, finished, nodeId, media, now) : { fresh: 0, refused: 0, hashes: [] };
      const remaining = this.#recordFinished(row, finished, nodeId, now, leaseExpiresAt, stored.fresh);
      return { result: { leaseExpiresAt, remaining, mediaQueued: stored.fresh, mediaRefused: stored.refused }, hashes: stored.hashes };
    });
    this.#seen.addAll(hashes); // committed: from now on these are turned away in memory
    return result;
  }

  /** Stores a report's media within the item's and the node's budget (rules.ts mediaRoom); counts what is refused. */
  #reportMedia(row: LeaseRow, finished: RangeSet, nodeId: number, media: readonly ReportedMedia[], now: number) {
    const b = this.#stmt('mediaBudget').get(row.id, nodeId) as { media_reported: number; media_window_at: number; media_window_count: number };
    const finishedAfter = row.kind === 'posts' ? applyFinished(row, finished).after.size : 0;
    const room = mediaRoom({ policy: this.#policy, itemReported: b.media_reported, finishedAfter, windowAt: b.media_window_at, windowCount: b.media_window_count, now });
    const stored = this.#insertMedia(media, false, room.room);
    this.#stmt('mediaTaken').run(stored.fresh, row.id);
    this.#stmt('nodeMedia').run(stored.refused, room.windowAt, room.windowCount + stored.fresh, nodeId);
    return stored;
  }

  async lookupLease({ nodeId, leaseId, now }: { nodeId: number; leaseId: string; now: number }): Promise<LeaseLookup> {
    const row = this.#do(() => this.#byLease(leaseId));
    if (isRepeatedDone(row, nodeId)) return { itemId: row!.id, state: 'done' };
    return { itemId: checkLive(row, leaseId, nodeId, now).id, state: 'live' };
  }

  async done({ nodeId, leaseId, stats, now, recheck }: DoneOptions) {
    return this.#tx(() => {
      const row = this.#byLease(leaseId);
      if (isRepeatedDone(row, nodeId)) return { duplicate: true };
      const live = checkLive(row, leaseId, nodeId, now);
      const again = recheckItemOf(live, parseStoredRanges(live.ranges), recheck, now);
      if (again) this.#stmt('insertRecheck').run(this.project, storedRanges(again.ranges), again.ranges.size, again.notBefore, again.rechecks);
      const added = doneCredit(live);
      this.#stmt('finish').run(now, JSON.stringify(stats), live.id);
      this.#stmt('credit').run(added, stats.bytes, 1, now, nodeId);
      this.#stmt('event').run(this.project, now, nodeId, added, stats.bytes);
      return { duplicate: false };
    });
  }

  async release({ nodeId, leaseId, finished, error, mediaErrors, recheck, now }: ReleaseOptions) {
    return this.#tx(() => {
      const row = checkLive(this.#byLease(leaseId), leaseId, nodeId, now);
      const remaining = this.#recordFinished(row, finished ?? new RangeSet(), nodeId, now, null);
      // A failed media item: each URL left counts one attempt, project-wide, with its reason.
      if (error !== undefined && row.kind === 'media') for (const seq of seqsOf(remaining)) this.#stmt('attemptUrl').run(mediaErrors?.get(seq) ?? error, seq, row.id);
      const after = parseStoredRanges(row.ranges).subtract(remaining);
      const again = recheckItemOf(row, after, recheck, now);
      if (again) this.#stmt('insertRecheck').run(this.project, storedRanges(again.ranges), again.ranges.size, again.notBefore, again.rechecks);
      this.#stmt('requeue').run({ count: after.size, finished: storedRanges(after), error: error ?? null, id: row.id });
      return { remaining };
    });
  }

  async claimableIdItems(now: number): Promise<number> {
    return this.#reports.claimableIdItems(now);
  }

  async stats(options: { now: number; windowMs: number }): Promise<TrackerStats> {
    return this.#reports.stats(options);
  }

  async workProgress(options: { now: number; windowMs: number }): Promise<{ kinds: KindProgress[]; bytesPerSec: number }> {
    return this.#reports.workProgress(options);
  }

  async ban({ nick, reason, now }: { nick: string; reason: string; now: number }) {
    return this.#tx(() => {
      this.#stmt('ban').run(this.project, nick, reason, now);
      return { releasedItems: this.#stmt('releaseNick').run(this.project, this.project, nick).changes };
    });
  }

  async unban(nick: string): Promise<void> {
    this.#do(() => this.#stmt('unban').run(this.project, nick));
  }

  async noteAccepted({ ids, at, forgetUpTo }: { ids: RangeSet; at: number; forgetUpTo: number }): Promise<void> {
    this.#tx(() => {
      this.#stmt('forgetAccepted').run(this.project, forgetUpTo);
      for (const r of ids.ranges) this.#stmt('noteAccepted').run(this.project, r.start, r.end, at);
    });
  }

  async acceptedSince(since: number): Promise<AcceptedRange[]> {
    return this.#reports.acceptedSince(since);
  }

  async getSetting(key: string): Promise<string | undefined> {
    return this.#do(() => (this.#stmt('getSetting').get(this.project, key) as { value: string } | undefined)?.value);
  }

  async setSetting(key: string, value: string): Promise<void> {
    this.#do(() => this.#stmt('setSetting').run(this.project, key, value));
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
