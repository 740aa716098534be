import Database from 'better-sqlite3';
import { StorageError } from '../../config/errors.js';
import { randomUUID } from 'node:crypto';
import { RangeSet } from '../../config/id-ranges.js';
import {
  type ClaimOptions,
  type ClaimResult,
  type DoneStats,
  type HeartbeatOptions,
  type ItemStore,
  type LeaseLookup,
  type NodeRecord,
  type ReleaseOptions,
  type SeedResult,
  type TrackerStats,
  EVENT_RETENTION_MS,
} from './item-store.js';
import { type LeaseRow, applyFinished, checkLive, claimPriorities, cutPendingFirst, doneCredit, heldIds, isRepeatedDone, leaseOf, nothingToClaim, packItems, parseStoredRanges, registrationDecision, remainderOf, storeError, storedRanges } from './rules.js';
import { SCHEMA_VERSION, addMissingColumnsSql, createTablesSql, INDEXES } from './schema.js';
import { type MediaUrl, type ReportedMedia, DEFAULT_MEDIA_ITEM_SIZE, SeenUrls, mediaPriority, mediaToStore, seqFilter, seqRanges, uniqueMedia } from './media-urls.js';
import { type KindProgress, type WorkRows, buildWorkProgress } from './deadline.js';
import {
  type HistoryRow,
  type RatePoint,
  type StatsRows,
  HISTORY_BUCKET_MS,
  HISTORY_RETENTION_MS,
  ROLLUP_KEY,
  ROLLUP_LAG_MS,
  buildHistory,
  buildStats,
} from './stats.js';

type Stmt = Database.Statement<unknown[], unknown>;


/** Every statement the store runs, by name; prepared once by `init()`. */
const SQL = {
  heldRanges: `SELECT ranges FROM items WHERE project = ? AND kind = 'posts' ORDER BY id`,
  projects: `SELECT project FROM items UNION SELECT project FROM nodes UNION SELECT project FROM settings ORDER BY 1`,
  insertItem: `INSERT INTO items (project, ranges, id_count) VALUES (?, ?, ?)`,
  insertNode: `INSERT INTO nodes (project, nick, token_hash, created_at) VALUES (?, ?, ?, ?)`,
  isBanned: `SELECT 1 FROM bans WHERE project = ? AND nick = ?`,
  nickOwner: `SELECT id, token_hash FROM nodes WHERE project = ? AND nick = ? ORDER BY id LIMIT 1`,
  tokenUsed: `SELECT 1 FROM nodes WHERE project = ? AND token_hash = ? LIMIT 1`,
  auth: `SELECT n.id, n.nick, b.nick IS NOT NULL AS banned FROM nodes n LEFT JOIN bans b ON b.project = n.project AND b.nick = n.nick WHERE n.token_hash = ? AND n.project = ?`,
  finishExpired: `UPDATE items SET state = 'done', lease_id = NULL, node_id = NULL, lease_expires_at = NULL WHERE project = ? AND state = 'claimed' AND lease_expires_at < ? AND finished_count >= id_count`,
  expire: `UPDATE items SET state = 'queued', lease_id = NULL, node_id = NULL, lease_expires_at = NULL WHERE project = ? AND state = 'claimed' AND lease_expires_at < ?`,
  nextQueued: `SELECT id, ranges, finished, kind, priority FROM items WHERE project = ? AND state = 'queued' AND priority BETWEEN ? AND ? ORDER BY priority, id LIMIT 1`,
  nextQueuedNewest: `SELECT id, ranges, finished, kind, priority FROM items WHERE project = ? AND state = 'queued' AND priority BETWEEN ? AND ? ORDER BY priority, id DESC LIMIT 1`,
  queuedPosts: `SELECT 1 FROM items WHERE project = ? AND state = 'queued' AND priority = 0 LIMIT 1`,
  pendingMin: `SELECT priority FROM media_urls WHERE project = ? AND item_id IS NULL ORDER BY priority, seq LIMIT 1`,
  pendingTake: `SELECT seq FROM media_urls WHERE project = ? AND item_id IS NULL AND priority = ? ORDER BY seq LIMIT ?`,
  insertMediaItem: `INSERT INTO items (project, ranges, id_count, kind, priority) VALUES (?, ?, ?, 'media', ?)`,
  assignSeq: `UPDATE media_urls SET item_id = ? WHERE seq = ?`,
  insertMedia: `INSERT INTO media_urls (project, url_hash, url, priority) VALUES (?, ?, ?, ?) ON CONFLICT (url_hash) DO NOTHING`,
  requeueMedia: `UPDATE media_urls SET item_id = NULL WHERE url_hash = ? AND item_id IN (SELECT id FROM items WHERE state = 'done')`,
  mediaCounts: `SELECT COUNT(*) AS urls, COALESCE(SUM(m.item_id IS NULL), 0) AS pending, COALESCE(SUM(i.state = 'done'), 0) AS done
    FROM media_urls m LEFT JOIN items i ON i.id = m.item_id WHERE m.project = ?`,
  lease: `UPDATE items SET state = 'claimed', lease_id = ?, node_id = ?, lease_expires_at = ?, attempts = attempts + 1 WHERE id = ?`,
  extendLeases: `UPDATE items SET lease_expires_at = lease_expires_at + ? WHERE project = ? AND state = 'claimed' AND lease_expires_at >= ?`,
  earliestExpiry: `SELECT MIN(lease_expires_at) AS at FROM items WHERE project = ? AND state = 'claimed' AND priority BETWEEN ? AND ?`,
  byLease: `SELECT id, node_id, state, lease_expires_at, ranges, finished, finished_count, id_count, kind FROM items WHERE lease_id = ? AND project = ?`,
  progress: `UPDATE items SET finished = ?, finished_count = ?, lease_expires_at = ? WHERE id = ?`,
  credit: `UPDATE nodes SET ids_done = ids_done + ?, bytes_done = MIN(bytes_done + ?, 9007199254740991), items_done = items_done + ?, last_seen_at = ? WHERE id = ?`,
  event: `INSERT INTO events (project, at, node_id, ids, bytes) VALUES (?, ?, ?, ?, ?)`,
  finish: `UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = ?, done_stats = ? WHERE id = ?`,
  requeue: `UPDATE items SET state = CASE WHEN ? >= id_count THEN 'done' ELSE 'queued' END, finished = ?, finished_count = ?, lease_id = NULL, node_id = NULL, lease_expires_at = NULL, last_error = COALESCE(?, last_error) WHERE id = ?`,
  ban: `INSERT OR REPLACE INTO bans (project, nick, reason, created_at) VALUES (?, ?, ?, ?)`,
  unban: `DELETE FROM bans WHERE project = ? AND nick = ?`,
  releaseNick: `UPDATE items SET state = 'queued', lease_id = NULL, node_id = NULL, lease_expires_at = NULL WHERE project = ? AND state = 'claimed' AND node_id IN (SELECT id FROM nodes WHERE project = ? AND nick = ?)`,
  getSetting: `SELECT value FROM settings WHERE project = ? AND key = ?`,
  setSetting: `INSERT OR REPLACE INTO settings (project, key, value) VALUES (?, ?, ?)`,
  pruneEvents: `DELETE FROM events WHERE project = ? AND at < ?`,
  rollup: `INSERT INTO rate_history (project, bucket, ids, bytes)
    SELECT project, (at / ${HISTORY_BUCKET_MS}) * ${HISTORY_BUCKET_MS}, SUM(ids), SUM(bytes) FROM events WHERE project = ? AND at >= ? AND at < ? GROUP BY 2
    ON CONFLICT (project, bucket) DO UPDATE SET ids = ids + excluded.ids, bytes = bytes + excluded.bytes`,
  pruneHistory: `DELETE FROM rate_history WHERE project = ? AND bucket < ?`,
  history: `SELECT bucket, ids, bytes FROM rate_history WHERE project = ? AND bucket >= ?
    UNION ALL SELECT (at / ${HISTORY_BUCKET_MS}) * ${HISTORY_BUCKET_MS}, SUM(ids), SUM(bytes) FROM events WHERE project = ? AND at >= ? GROUP BY 1`,
  itemCounts: `SELECT state, COUNT(*) AS items, COALESCE(SUM(id_count), 0) AS ids, COALESCE(SUM(finished_count), 0) AS finished FROM items WHERE project = ? AND kind = 'posts' GROUP BY state`,
  nickTotals: `SELECT nick, SUM(items_done) AS items, SUM(ids_done) AS ids, SUM(bytes_done) AS bytes FROM nodes WHERE project = ? GROUP BY nick`,
  nickRates: `SELECT n.nick AS nick, SUM(e.ids) AS ids FROM events e JOIN nodes n ON n.id = e.node_id WHERE e.project = ? AND e.at >= ? GROUP BY n.nick`,
  activeNodes: `SELECT COUNT(DISTINCT node_id) AS n FROM items WHERE project = ? AND state = 'claimed' AND lease_expires_at >= ?`,
  workItems: `SELECT priority, SUM(id_count) AS units, SUM(finished_count) AS finished, SUM(CASE WHEN state = 'done' THEN finished_count ELSE 0 END) AS sample_units,
    SUM(CASE WHEN state = 'done' THEN COALESCE(json_extract(done_stats, '$.bytes'), 0) ELSE 0 END) AS sample_bytes FROM items WHERE project = ? GROUP BY priority`,
  workPending: `SELECT priority, COUNT(*) AS n FROM media_urls WHERE project = ? AND item_id IS NULL GROUP BY priority`,
  windowBytes: `SELECT COALESCE(SUM(bytes), 0) AS n, COALESCE(SUM(ids), 0) AS units, COUNT(*) AS events, MIN(at) AS first_at, MAX(at) AS last_at FROM events WHERE project = ? AND at >= ?`,
} as const;

type SqlName = keyof typeof SQL;

interface QueuedRow {
  id: number;
  ranges: string;
  finished: string;
  kind: string;
  priority: number;
}

/**
 * The embedded store: one better-sqlite3 connection in WAL mode, statements prepared once. Every
 * transition is one IMMEDIATE transaction; the rules are rules.ts's, driver errors leave as
 * `storeError` makes them (the PostgreSQL store's shape).
 */
export class SqliteItemStore implements ItemStore {
  readonly kind = 'sqlite' as const;
  readonly project: string;
  #db: Database.Database;
  #s: Partial<Record<SqlName, Stmt>> = {};
  #seen: SeenUrls;

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

  #expire(now: number): number {
    const finished = this.#stmt('finishExpired').run(this.project, now).changes;
    return finished + this.#stmt('expire').run(this.project, now).changes;
  }

  async expireLeases(now: number): Promise<number> {
    return this.#tx(() => {
      this.#rollup(now);
      this.#stmt('pruneEvents').run(this.project, now - EVENT_RETENTION_MS);
      return this.#expire(now);
    });
  }

  /** Rolls events older than ROLLUP_LAG_MS into rate_history, once each (the watermark moves with them). */
  #rollup(now: number): void {
    const from = Number((this.#stmt('getSetting').get(this.project, ROLLUP_KEY) as { value: string } | undefined)?.value ?? 0);
    const to = now - ROLLUP_LAG_MS;
    if (to <= from) return;
    this.#stmt('rollup').run(this.project, from, to);
    this.#stmt('setSetting').run(this.project, ROLLUP_KEY, String(to));
    this.#stmt('pruneHistory').run(this.project, now - HISTORY_RETENTION_MS);
  }

  async rateHistory({ now, sinceMs }: { now: number; sinceMs: number }): Promise<RatePoint[]> {
    const rows = this.#tx(() => {
      const from = Number((this.#stmt('getSetting').get(this.project, ROLLUP_KEY) as { value: string } | undefined)?.value ?? 0);
      return this.#stmt('history').all(this.project, now - sinceMs - HISTORY_BUCKET_MS, this.project, from) as HistoryRow[];
    });
    return buildHistory({ rows, now, sinceMs: Math.min(sinceMs, HISTORY_RETENTION_MS) });
  }

  async extendLeases({ since, byMs }: { since: number; byMs: number }): Promise<number> {
    return this.#do(() => this.#stmt('extendLeases').run(byMs, this.project, since).changes);
  }

  async claim({ nodeId, now, leaseMs, only, order = 'oldest', mediaItemSize = DEFAULT_MEDIA_ITEM_SIZE }: ClaimOptions): Promise<ClaimResult> {
    const { lo, hi } = claimPriorities(only);
    return this.#tx((): ClaimResult => {
      const expired = this.#expire(now);
      let row = this.#stmt(order === 'newest' ? 'nextQueuedNewest' : 'nextQueued').get(this.project, lo, hi) as QueuedRow | undefined;
      if (only !== 'posts') {
        const pending = (this.#stmt('pendingMin').get(this.project) as { priority: number } | undefined)?.priority;
        if (cutPendingFirst(pending, row?.priority)) row = this.#cutMediaItem(pending, mediaItemSize);
      }
      if (!row) {
        const earliestExpiry = (this.#stmt('earliestExpiry').get(this.project, 0, hi) as { at: number | null }).at;
        const postsQueued = this.#stmt('queuedPosts').get(this.project) !== undefined;
        return { ...nothingToClaim({ earliestExpiry, postsQueued, only, now }), expired };
      }
      const leaseId = randomUUID();
      const leaseExpiresAt = now + leaseMs;
      this.#stmt('lease').run(leaseId, nodeId, leaseExpiresAt, row.id);
      const urls = row.kind === 'media' ? this.#urlsOf(remainderOf(row)) : undefined;
      return { kind: 'lease', lease: leaseOf(row, leaseId, leaseExpiresAt, urls), expired };
    });
  }

  /** Cuts up to `size` pending URLs of one priority into a queued media item (inside a claim). */
  #cutMediaItem(priority: number, size: number): QueuedRow {
    const seqs = this.#stmt('pendingTake').pluck().all(this.project, priority, size) as number[];
    const ranges = seqRanges(seqs);
    const id = Number(this.#stmt('insertMediaItem').run(this.project, storedRanges(ranges), ranges.size, priority).lastInsertRowid);
    for (const seq of seqs) this.#stmt('assignSeq').run(id, seq);
    return { id, ranges: storedRanges(ranges), finished: '[]', kind: 'media', priority };
  }

  #urlsOf(ranges: RangeSet): MediaUrl[] {
    const { sql, values } = seqFilter(ranges, () => '?');
    return this.#db.prepare(`SELECT seq, url FROM media_urls WHERE project = ? AND (${sql}) ORDER BY seq`).all(this.project, ...values) as MediaUrl[];
  }

  /**
   * Inserts never-seen URLs (one statement each, the unique hash is the dedupe) inside the
   * caller's transaction; returns how many were new and the hashes to remember once it commits.
   */
  #insertMedia(media: readonly ReportedMedia[], requeue: boolean): { fresh: number; hashes: Buffer[] } {
    const { todo, hashes } = mediaToStore(this.project, media, this.#seen, requeue);
    let fresh = 0;
    todo.forEach((m, i) => {
      const hash = hashes[i]!;
      if (this.#stmt('insertMedia').run(this.project, hash, m.url, mediaPriority(m)).changes > 0) fresh++;
      else if (requeue) fresh += this.#stmt('requeueMedia').run(hash).changes;
    });
    return { fresh, hashes };
  }

  async queueMedia(media: readonly ReportedMedia[], options: { requeue?: boolean } = {}): Promise<{ queued: number; known: number }> {
    const { fresh, hashes } = this.#tx(() => this.#insertMedia(media, options.requeue ?? false));
    this.#seen.addAll(hashes);
    return { queued: fresh, known: uniqueMedia(media).length - fresh };
  }

  async mediaCounts(): Promise<{ urls: number; done: number; pending: number }> {
    const row = this.#do(() => this.#stmt('mediaCounts').get(this.project) as { urls: number; done: number; pending: number });
    return { urls: row.urls, done: row.done, pending: row.pending };
  }

  #byLease(leaseId: string): LeaseRow | undefined {
    return this.#stmt('byLease').get(leaseId, this.project) as LeaseRow | undefined;
  }

  /** Stores a report of finished sub-ranges on the item and credits the node; returns what is left. */
  #recordFinished(row: LeaseRow, finished: RangeSet, nodeId: number, now: number, expiresAt: number | null): RangeSet {
    const { after, added, remaining } = applyFinished(row, finished);
    this.#stmt('progress').run(storedRanges(after), after.size, expiresAt, row.id);
    if (added > 0) {
      this.#stmt('credit').run(added, 0, 0, now, nodeId);
      this.#stmt('event').run(this.project, now, nodeId, added, 0);
    }
    return remaining;
  }

  async heartbeat({ nodeId, leaseId, finished, now, leaseMs, media = [] }: HeartbeatOptions) {
    const { result, hashes } = this.#tx(() => {
      const row = checkLive(this.#byLease(leaseId), leaseId, nodeId, now);
      const leaseExpiresAt = now + leaseMs;
      const stored = media.length > 0 ? this.#insertMedia(media, false) : { fresh: 0, hashes: [] };
      const remaining = this.#recordFinished(row, finished, nodeId, now, leaseExpiresAt);
      return { result: { leaseExpiresAt, remaining, mediaQueued: stored.fresh }, hashes: stored.hashes };
    });
    this.#seen.addAll(hashes); // committed: from now on these are turned away in memory
    return result;
  }

  async lookupLease({ nodeId, leaseId, now }: { nodeId: number; leaseId: string; now: number }): Promise<LeaseLookup> {
    const row = this.#do(() => this.#byLease(leaseId));
    if (isRepeatedDone(row, nodeId)) return { itemId: row!.id, state: 'done' };
    return { itemId: checkLive(row, leaseId, nodeId, now).id, state: 'live' };
  }

  async done({ nodeId, leaseId, stats, now }: { nodeId: number; leaseId: string; stats: DoneStats; now: number }) {
    return this.#tx(() => {
      const row = this.#byLease(leaseId);
      if (isRepeatedDone(row, nodeId)) return { duplicate: true };
      const live = checkLive(row, leaseId, nodeId, now);
      const added = doneCredit(live);
      this.#stmt('finish').run(now, JSON.stringify(stats), live.id);
      this.#stmt('credit').run(added, stats.bytes, 1, now, nodeId);
      this.#stmt('event').run(this.project, now, nodeId, added, stats.bytes);
      return { duplicate: false };
    });
  }

  async release({ nodeId, leaseId, finished, error, now }: ReleaseOptions) {
    return this.#tx(() => {
      const row = checkLive(this.#byLease(leaseId), leaseId, nodeId, now);
      const remaining = this.#recordFinished(row, finished ?? new RangeSet(), nodeId, now, null);
      const after = parseStoredRanges(row.ranges).subtract(remaining);
      this.#stmt('requeue').run(after.size, storedRanges(after), after.size, error ?? null, row.id);
      return { remaining };
    });
  }

  async stats({ now, windowMs }: { now: number; windowMs: number }): Promise<TrackerStats> {
    const since = now - windowMs;
    // Read-only: events are rolled up into the rate history, then pruned, by expireLeases.
    const rows: StatsRows = this.#tx(() => ({
      itemCounts: this.#stmt('itemCounts').all(this.project) as StatsRows['itemCounts'],
      nickTotals: this.#stmt('nickTotals').all(this.project) as StatsRows['nickTotals'],
      nickRates: this.#stmt('nickRates').all(this.project, since) as StatsRows['nickRates'],
      activeNodes: Number((this.#stmt('activeNodes').get(this.project, now) as { n: number }).n),
    }));
    return buildStats({ project: this.project, rows, now, windowMs });
  }

  async workProgress({ now, windowMs }: { now: number; windowMs: number }): Promise<{ kinds: KindProgress[]; bytesPerSec: number }> {
    const rows = this.#tx((): WorkRows => {
      const recent = this.#stmt('windowBytes').get(this.project, now - windowMs) as { n: number; units: number; events: number; first_at: number | null; last_at: number | null };
      return {
        items: this.#stmt('workItems').all(this.project) as WorkRows['items'],
        pending: this.#stmt('workPending').all(this.project) as WorkRows['pending'],
        windowBytes: recent.n,
        windowUnits: recent.units,
        windowEvents: { count: recent.events, firstAt: recent.first_at, lastAt: recent.last_at },
      };
    });
    return buildWorkProgress(rows, windowMs, now);
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
