import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { InputError, StorageError } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import type { AcceptedRange } from '../../config/live-edge.js';
import { type ClaimOptions, type ClaimResult, type DoneOptions, type HeartbeatOptions, type ItemStore, type LeaseLookup, type MediaCounts, type NodeRecord, type ReleaseOptions, type SeedResult, type TrackerStats, EVENT_RETENTION_MS } from './item-store.js';
import { type MediaUrl, type ReportedMedia, DEFAULT_MEDIA_ITEM_SIZE, SeenUrls, mediaPriority, mediaToStore, seqFilter, seqRanges, uniqueMedia } from './media-urls.js';
import type { KindProgress } from './deadline.js';
import type { RatePoint } from './stats.js';
import { PostgresReports } from './postgres-reports.js';
import { type ClaimedRow, type LeaseRow, type StorePolicy, NO_LIMITS, EXPIRED_REASON, mediaRoom, parseStoredRanges, retryAfterMsFor, seqsOf, stallBarBefore, applyFinished, checkLive, claimPriorities, cutPendingFirst, doneCredit, isRepeatedDone, leaseOf, recheckItemOf, nothingToClaim, packItems, registrationDecision, remainderOf, storeError, storedRanges } from './rules.js';
import { SCHEMA_VERSION, INDEXES, addMissingColumnsSql, createTablesSql } from './schema.js';
import * as Q from './postgres-sql.js';

/** Parses BIGINT (int8) columns as numbers; IDs and counts stay below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

type Client = pg.PoolClient;

/**
 * The shared store: a pg Pool (owned; `close()` ends it). Several tracker processes may use one
 * database: a claim is one transaction whose row picks use `FOR UPDATE SKIP LOCKED`; every other
 * transition is one guarded statement (compare-and-set on the lease and the finished ranges),
 * retried if it lost a race. The rules are rules.ts's, the statements postgres-sql.ts's, the
 * read-only reports (and the rate history's rollup) postgres-reports.ts's.
 */
export class PostgresItemStore implements ItemStore {
  readonly kind = 'postgres' as const;
  readonly project: string;
  #pool: pg.Pool;
  #schema: string;
  #seen: SeenUrls;
  #policy: StorePolicy = { ...NO_LIMITS };
  readonly #reports: PostgresReports;

  /**
   * `synchronousCommit: false` sets PostgreSQL's synchronous_commit=off for these sessions: a
   * database crash may forget the last moments of transitions (never corrupts them) — those
   * leases simply expire and their remainders are handed out again — in exchange for not
   * waiting on a WAL flush per transition. Default true.
   */
  constructor(options: { connectionString: string; project: string; schema?: string; maxConnections?: number; synchronousCommit?: boolean; seenCache?: number }) {
    const { connectionString, project, schema = 'public', maxConnections = 10, synchronousCommit = true } = options;
    this.#seen = new SeenUrls(options.seenCache);
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new InputError(`bad PostgreSQL schema name "${schema}"`);
    this.project = project;
    this.#schema = schema;
    this.#pool = new pg.Pool({ connectionString, max: maxConnections, options: `-c search_path=${schema}${synchronousCommit ? '' : ' -c synchronous_commit=off'}`, types });
    this.#pool.on('error', () => {}); // an idle client dropped by the server; the next query reconnects
    this.#reports = new PostgresReports({ project, schema, query: (text, values) => this.#q(text, values), tx: (fn, what) => this.#tx(fn, what) });
  }

  setPolicy(policy: Partial<StorePolicy>): void {
    this.#policy = { ...this.#policy, ...policy };
  }

  /** One statement on any pooled connection (its own transaction); driver errors wrapped by `storeError`. */
  async #q<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    try {
      return (await this.#pool.query<R>(text, values)).rows;
    } catch (err) {
      throw storeError(err);
    }
  }

  /** Runs `fn` in one transaction on one connection; commits, or rolls back on a throw (wrapped by `storeError`). */
  async #tx<T>(fn: (client: Client) => Promise<T>, what?: string): Promise<T> {
    const client = await this.#pool.connect().catch((err: unknown) => {
      throw storeError(err, what);
    });
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw storeError(err, what);
    } finally {
      client.release();
    }
  }

  async init(): Promise<void> {
    await this.#tx(async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('lifeboat-tracker-schema'))`);
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.#schema}"`);
      await client.query(createTablesSql('postgres'));
      const live = (await client.query<{ table_name: string; column_name: string }>(
        `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1`,
        [this.#schema],
      )).rows;
      const columns = (table: string) => new Set(live.filter((c) => c.table_name === table).map((c) => c.column_name));
      for (const alter of addMissingColumnsSql('postgres', columns)) await client.query(alter);
      for (const index of INDEXES) await client.query(index);
      const row = (await client.query(`SELECT value FROM meta WHERE key = 'schema_version'`)).rows[0] as { value: string } | undefined;
      if (row && Number(row.value) > SCHEMA_VERSION) {
        throw new StorageError(`tracker database schema ${row.value} is newer than this lifeboat (${SCHEMA_VERSION}); upgrade lifeboat`);
      }
      await client.query(`INSERT INTO meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [String(SCHEMA_VERSION)]);
    });
  }

  async seed(items: Iterable<RangeSet>): Promise<{ items: number; ids: number }> {
    return this.#seedTx(async () => items);
  }

  async seedRecheck(ids: RangeSet, itemSize: number): Promise<{ items: number; ids: number }> {
    return this.#tx(async (client) => {
      const sets = [...packItems(ids, itemSize)];
      for (let i = 0; i < sets.length; i += 20_000) {
        const batch = sets.slice(i, i + 20_000);
        await client.query(Q.INSERT_RECHECKS, [this.project, batch.map(storedRanges), batch.map((s) => s.size)]);
      }
      return { items: sets.length, ids: ids.size };
    }, 'seeding the tracker database failed');
  }

  async seedNew(ids: RangeSet, itemSize: number): Promise<SeedResult> {
    let skipped = 0;
    const result = await this.#seedTx(async (client) => {
      // Seeds of one project take turns, so two at once cannot both add the same IDs.
      await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`lifeboat-seed:${this.#schema}:${this.project}`]);
      const held = await client.query<{ s: number; e: number }>(Q.HELD_RANGES, [this.project]);
      const fresh = ids.subtract(new RangeSet(held.rows.map((r) => ({ start: Number(r.s), end: Number(r.e) }))));
      skipped = ids.size - fresh.size;
      return packItems(fresh, itemSize);
    });
    return { ...result, skipped };
  }

  async listProjects(): Promise<string[]> {
    const rows = await this.#q<{ project: string }>(`SELECT project FROM items UNION SELECT project FROM nodes UNION SELECT project FROM settings ORDER BY 1`);
    return rows.map((r) => r.project);
  }

  async #seedTx(prepare: (client: Client) => Promise<Iterable<RangeSet>>): Promise<{ items: number; ids: number }> {
    return this.#tx(async (client) => {
      let count = 0;
      let ids = 0;
      let ranges: string[] = [];
      let sizes: number[] = [];
      const flush = async () => {
        await client.query(`INSERT INTO items (project, ranges, id_count) SELECT $1, r, c FROM unnest($2::text[], $3::bigint[]) AS t (r, c)`, [this.project, ranges, sizes]);
        ranges = [];
        sizes = [];
      };
      for (const set of await prepare(client)) {
        if (set.isEmpty) continue;
        ranges.push(storedRanges(set));
        sizes.push(set.size);
        count++;
        ids += set.size;
        if (ranges.length >= 20_000) await flush();
      }
      if (ranges.length > 0) await flush();
      return { items: count, ids };
    }, 'seeding the tracker database failed');
  }

  async registerNode({ nick, tokenHash, now }: { nick: string; tokenHash: string; now: number }): Promise<NodeRecord> {
    return this.#tx(async (client) => {
      // A lock on (project, nick) for the transaction: two registrations of one nick at once are
      // serialised, and the second sees the first's row.
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('lifeboat-nick'), hashtext($1 || '/' || $2))`, [this.project, nick]);
      const seen = (await client.query<{ banned: boolean; owner: number | null; owner_hash: string | null; token_used: boolean }>(Q.REGISTRATION_SEEN, [this.project, nick, tokenHash])).rows[0]!;
      const owner = seen.owner !== null ? { id: seen.owner, tokenHash: seen.owner_hash ?? '' } : undefined;
      const decision = registrationDecision({ banned: seen.banned, owner, tokenUsed: seen.token_used }, nick, tokenHash);
      if ('existing' in decision) return { id: decision.existing, nick, banned: false };
      const rows = (await client.query<{ id: number }>(`INSERT INTO nodes (project, nick, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id`, [this.project, nick, tokenHash, now])).rows;
      return { id: Number(rows[0]!.id), nick, banned: false };
    });
  }

  async authenticate(tokenHash: string): Promise<NodeRecord | undefined> {
    const rows = await this.#q<{ id: number; nick: string; banned: boolean }>(Q.AUTH, [tokenHash, this.project]);
    return rows[0];
  }

  async expireLeases(now: number): Promise<number> {
    await this.#reports.rollup(now);
    await this.#q(`DELETE FROM events WHERE project = $1 AND at < $2`, [this.project, now - EVENT_RETENTION_MS]);
    return Number((await this.#q<{ n: number }>(Q.EXPIRE, this.#expireValues(now)))[0]?.n ?? 0);
  }

  #expireValues(now: number): unknown[] {
    return [this.project, now, now - this.#policy.stallMs, EXPIRED_REASON];
  }

  async rateHistory(options: { now: number; sinceMs: number }): Promise<RatePoint[]> {
    return this.#reports.rateHistory(options);
  }

  async extendLeases({ since, byMs }: { since: number; byMs: number }): Promise<number> {
    const rows = await this.#q<{ n: number }>(Q.EXTEND_LEASES, [byMs, this.project, since]);
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * One transaction (as SQLite's): overdue leases end, then the first post item, else whichever
   * media work comes first — pending URLs cut into a new item, or a queued media item — is
   * leased, and a media lease's URLs are read; a failure anywhere leaves nothing of it behind.
   */
  async claim({ nodeId, now, leaseMs, only, order = 'oldest', mediaItemSize = DEFAULT_MEDIA_ITEM_SIZE }: ClaimOptions): Promise<ClaimResult> {
    const claimSql = Q.claimSql(order);
    const { lo: lowest, hi } = claimPriorities(only);
    const leaseId = randomUUID();
    const leaseExpiresAt = now + leaseMs;
    return this.#tx(async (client): Promise<ClaimResult> => {
      const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[]) => (await client.query<R>(text, values)).rows;
      const expired = Number((await q<{ n: number }>(Q.EXPIRE, this.#expireValues(now)))[0]?.n ?? 0);
      const live = (await q<{ n: number; at: number | null }>(Q.LIVE_LEASES, [this.project, nodeId]))[0]!;
      if (live.n >= this.#policy.maxLeasesPerNode) {
        await q(Q.REFUSE_CLAIM, [nodeId]);
        return { kind: 'later', retryAfterMs: retryAfterMsFor(live.at ?? now, now), capped: true, expired };
      }
      const take = (lo: number, hi: number) => q<ClaimedRow & { attempts: number; failures: number }>(claimSql, [this.project, leaseId, nodeId, leaseExpiresAt, lo, hi, now]);
      for (;;) {
        let row: (ClaimedRow & { attempts: number; failures: number }) | undefined;
        if (only !== 'media') row = (await take(0, 0))[0];
        if (!row && only !== 'posts') {
          const peek = (await q<{ pending: number | null; queued: number | null; queued_failures: number | null }>(Q.PEEK_MEDIA, [this.project, nodeId]))[0];
          const queued = peek?.queued !== null && peek?.queued !== undefined ? { priority: peek.queued, failures: peek.queued_failures ?? 0 } : undefined;
          if (cutPendingFirst(peek?.pending, queued)) row = await this.#cutMediaItem(client, { priority: peek!.pending!, size: mediaItemSize, leaseId, nodeId, leaseExpiresAt, now });
          row ??= (await take(1, 99))[0];
        }
        // Nothing else claimable: an item this node stalled on, once the bar lifted (rules.ts stallBarBefore).
        row ??= (await q<ClaimedRow & { attempts: number; failures: number }>(Q.claimSql(order, true), [this.project, leaseId, nodeId, leaseExpiresAt, lowest, hi, now, stallBarBefore(now, this.#policy)]))[0];
        if (!row) {
          const seen = (await q<{ at: number | null; posts: boolean; barred: number | null }>(Q.NOTHING_QUEUED, [this.project, hi, nodeId, lowest]))[0];
          return { ...nothingToClaim({ earliestExpiry: seen?.at, postsQueued: seen?.posts ?? false, only, now, barredSince: seen?.barred, stallMs: this.#policy.stallMs }), expired };
        }
        const kept = row.kind === 'media' && row.attempts > 0 ? await this.#giveUp(client, row, now) : row;
        if (!kept) continue; // every URL left was given up on: the item is done, take the next
        const urls = kept.kind === 'media' ? await this.#urlsOf(client, remainderOf(kept)) : undefined;
        return { kind: 'lease', lease: leaseOf(kept, leaseId, leaseExpiresAt, urls), expired };
      }
    });
  }

  /**
   * Cuts up to `size` pending URLs of one priority into a media item leased at once (inside the
   * claim's transaction). Rows are taken with SKIP LOCKED: two tracker processes cutting at once take disjoint URLs.
   */
  async #cutMediaItem(client: Client, o: { priority: number; size: number; leaseId: string; nodeId: number; leaseExpiresAt: number; now: number }) {
    const seqs = (await client.query<{ seq: number }>(Q.PENDING_TAKE, [this.project, o.priority, o.size])).rows.map((r) => Number(r.seq));
    if (seqs.length === 0) return undefined;
    const ranges = storedRanges(seqRanges(seqs));
    const values = [this.project, ranges, seqs.length, o.priority, o.leaseId, o.nodeId, o.leaseExpiresAt, o.now];
    const id = Number((await client.query<{ id: number }>(Q.INSERT_MEDIA_ITEM, values)).rows[0]!.id);
    await client.query(`UPDATE media_urls SET item_id = $1 WHERE seq = ANY($2::bigint[])`, [id, seqs]);
    return { id, ranges, finished: '[]', kind: 'media', attempts: 0, failures: 0 };
  }

  /** As SqliteItemStore's: a put-back media item's URLs at `media.max_attempts` are failed; undefined when none is left. */
  async #giveUp<R extends ClaimedRow>(client: Client, row: R, now: number): Promise<R | undefined> {
    const left = remainderOf(row);
    const gone = (await client.query<{ seq: number }>(Q.GIVEN_UP, [row.id, this.#policy.mediaMaxAttempts])).rows.map((g) => Number(g.seq)).filter((seq) => left.has(seq));
    if (gone.length === 0) return row;
    await client.query(Q.FAIL_URLS, [now, gone]);
    const after = parseStoredRanges(row.finished).union(seqRanges(gone));
    if (left.subtract(after).isEmpty) {
      await client.query(Q.FINISH_GIVEN_UP, [now, row.id]);
      return undefined;
    }
    await client.query(Q.GIVE_UP_PROGRESS, [storedRanges(after), after.size, row.id]);
    return { ...row, finished: storedRanges(after) };
  }

  async #urlsOf(client: Client, ranges: RangeSet): Promise<MediaUrl[]> {
    const { sql, values } = seqFilter(ranges, (i) => `$${i + 2}`);
    const rows = (await client.query<MediaUrl>(`SELECT seq, url FROM media_urls WHERE project = $1 AND (${sql}) ORDER BY seq`, [this.project, ...values])).rows;
    return rows.map((r) => ({ seq: Number(r.seq), url: r.url }));
  }

  /**
   * Inserts never-seen URLs in one statement (the unique hash is the dedupe) inside the caller's
   * transaction; returns how many were new and the hashes to remember once it commits.
   */
  async #insertMedia(client: Client, media: readonly ReportedMedia[], requeue: boolean, room = Infinity): Promise<{ fresh: number; refused: number; hashes: Buffer[] }> {
    let { todo, hashes } = mediaToStore(this.project, media, this.#seen, requeue);
    let refused = 0;
    if (todo.length > room) {
      // Over the budget: the known URLs cost nothing; of the never-seen ones only `room` are taken.
      const known = new Set((await client.query<{ url_hash: Buffer }>(Q.MEDIA_KNOWN, [hashes])).rows.map((r) => r.url_hash.toString('latin1')));
      let left = room;
      const keep = todo.map((_, i) => known.has(hashes[i]!.toString('latin1')) || left-- > 0);
      refused = keep.filter((k) => !k).length;
      todo = todo.filter((_, i) => keep[i]);
      hashes = hashes.filter((_, i) => keep[i]);
    }
    if (todo.length === 0) return { fresh: 0, refused, hashes };
    const inserted = await client.query(Q.INSERT_MEDIA, [this.project, hashes, todo.map((m) => m.url), todo.map((m) => mediaPriority(m))]);
    let fresh = inserted.rowCount ?? 0;
    if (requeue) fresh += (await client.query(Q.REQUEUE_MEDIA, [hashes])).rowCount ?? 0;
    return { fresh, refused, hashes };
  }

  async queueMedia(media: readonly ReportedMedia[], options: { requeue?: boolean } = {}): Promise<{ queued: number; known: number }> {
    const { fresh, hashes } = await this.#tx((client) => this.#insertMedia(client, media, options.requeue ?? false));
    this.#seen.addAll(hashes);
    return { queued: fresh, known: uniqueMedia(media).length - fresh };
  }

  async mediaCounts(): Promise<MediaCounts> {
    return this.#reports.mediaCounts();
  }

  async #byLease(leaseId: string): Promise<LeaseRow | undefined> {
    return (await this.#q<LeaseRow>(Q.BY_LEASE, [leaseId, this.project]))[0];
  }

  /** Runs a read → guarded-write transition until the write applies or the lease turns out stale. */
  async #guarded<T>(leaseId: string, step: (row: LeaseRow | undefined) => Promise<T | undefined>): Promise<T> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const result = await step(await this.#byLease(leaseId));
      if (result !== undefined) return result;
    }
    throw new StorageError(`lease ${leaseId}: too many concurrent updates; try again`);
  }

  async heartbeat({ nodeId, leaseId, finished, now, leaseMs, media = [], mediaRefusedBefore = 0 }: HeartbeatOptions) {
    if (mediaRefusedBefore > 0) await this.#q(Q.REFUSE_MEDIA, [nodeId, mediaRefusedBefore]);
    const leaseExpiresAt = now + leaseMs;
    const write = (row: LeaseRow, mediaTaken = 0) => {
      const { after, added, remaining } = applyFinished(row, finished);
      return { remaining, after, values: [row.id, leaseId, nodeId, now, row.finished, added, 0, 0, this.project, storedRanges(after), after.size, leaseExpiresAt, mediaTaken > 0] };
    };
    // URLs this process knows are stored need no transaction: the one-statement path below serves.
    const unseen = mediaToStore(this.project, media, this.#seen, false).todo;
    if (unseen.length > 0) {
      // Media and the finished IDs they came from in one transaction; the item row is locked first.
      const { result, hashes } = await this.#tx(async (client) => {
        const row = checkLive((await client.query<LeaseRow>(Q.BY_LEASE_FOR_UPDATE, [leaseId, this.project])).rows[0], leaseId, nodeId, now);
        // Within the item's and the node's budget (rules.ts mediaRoom); what is over is counted on the node.
        const b = (await client.query<{ media_reported: number; media_window_at: number; media_window_count: number }>(Q.MEDIA_BUDGET, [row.id, nodeId])).rows[0]!;
        const finishedAfter = row.kind === 'posts' ? applyFinished(row, finished).after.size : 0;
        const room = mediaRoom({ policy: this.#policy, itemReported: b.media_reported, finishedAfter, windowAt: b.media_window_at, windowCount: b.media_window_count, now });
        const stored = await this.#insertMedia(client, unseen, false, room.room);
        await client.query(Q.MEDIA_TAKEN, [row.id, stored.fresh]);
        await client.query(Q.NODE_MEDIA, [nodeId, stored.refused, room.windowAt, room.windowCount + stored.fresh]);
        const w = write(row, stored.fresh);
        await client.query(Q.HEARTBEAT, w.values);
        return { result: { leaseExpiresAt, remaining: w.remaining, mediaQueued: stored.fresh, mediaRefused: stored.refused }, hashes: stored.hashes };
      });
      this.#seen.addAll(hashes); // committed: from now on these are turned away in memory
      return result;
    }
    return this.#guarded(leaseId, async (found) => {
      const w = write(checkLive(found, leaseId, nodeId, now));
      const rows = await this.#q<{ n: number }>(Q.HEARTBEAT, w.values);
      return rows[0]?.n === 1 ? { leaseExpiresAt, remaining: w.remaining, mediaQueued: 0, mediaRefused: 0 } : undefined;
    });
  }

  async lookupLease({ nodeId, leaseId, now }: { nodeId: number; leaseId: string; now: number }): Promise<LeaseLookup> {
    const row = await this.#byLease(leaseId);
    if (isRepeatedDone(row, nodeId)) return { itemId: Number(row!.id), state: 'done' };
    return { itemId: Number(checkLive(row, leaseId, nodeId, now).id), state: 'live' };
  }

  async done({ nodeId, leaseId, stats, now, recheck }: DoneOptions) {
    return this.#guarded(leaseId, async (found) => {
      if (isRepeatedDone(found, nodeId)) return { duplicate: true };
      const row = checkLive(found, leaseId, nodeId, now);
      const values = [row.id, leaseId, nodeId, now, row.finished, doneCredit(row), stats.bytes, 1, this.project, JSON.stringify(stats)];
      const again = recheckItemOf(row, parseStoredRanges(row.ranges), recheck, now);
      const rows = again
        ? await this.#q<{ n: number }>(Q.DONE_RECHECK, [...values, storedRanges(again.ranges), again.ranges.size, again.notBefore, again.rechecks])
        : await this.#q<{ n: number }>(Q.DONE, values);
      return rows[0]?.n === 1 ? { duplicate: false } : undefined;
    });
  }

  async release({ nodeId, leaseId, finished, error, mediaErrors, recheck, now }: ReleaseOptions) {
    const values = (row: LeaseRow) => {
      const { after, added, remaining } = applyFinished(row, finished ?? new RangeSet());
      return { remaining, after, values: [row.id, leaseId, nodeId, now, row.finished, added, 0, 0, this.project, storedRanges(after), after.size, error ?? null] };
    };
    const found = await this.#byLease(leaseId);
    if ((error !== undefined && found?.kind === 'media') || recheck) {
      // With the release, in one transaction: a failed media item's URLs left count one attempt
      // each, project-wide, with their reason; a fail's missing IDs near the live edge become a
      // recheck item (issue 21 §1).
      return this.#tx(async (client) => {
        const row = checkLive((await client.query<LeaseRow>(Q.BY_LEASE_FOR_UPDATE, [leaseId, this.project])).rows[0], leaseId, nodeId, now);
        const v = values(row);
        await client.query(Q.RELEASE, v.values);
        if (error !== undefined && row.kind === 'media') {
          const seqs = [...seqsOf(v.remaining)];
          await client.query(Q.ATTEMPT_URLS, [row.id, seqs, seqs.map((seq) => mediaErrors?.get(seq) ?? error)]);
        }
        const again = recheckItemOf(row, v.after, recheck, now);
        if (again) await client.query(Q.INSERT_RECHECK, [this.project, storedRanges(again.ranges), again.ranges.size, again.notBefore, again.rechecks]);
        return { remaining: v.remaining };
      });
    }
    return this.#guarded(leaseId, async (again) => {
      const v = values(checkLive(again, leaseId, nodeId, now));
      const rows = await this.#q<{ n: number }>(Q.RELEASE, v.values);
      return rows[0]?.n === 1 ? { remaining: v.remaining } : undefined;
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
    const rows = await this.#q<{ n: number }>(Q.BAN, [this.project, nick, reason, now]);
    return { releasedItems: rows[0]?.n ?? 0 };
  }

  async unban(nick: string): Promise<void> {
    await this.#q(`DELETE FROM bans WHERE project = $1 AND nick = $2`, [this.project, nick]);
  }

  async noteAccepted({ ids, at, forgetUpTo }: { ids: RangeSet; at: number; forgetUpTo: number }): Promise<void> {
    await this.#q(Q.NOTE_ACCEPTED, [this.project, ids.ranges.map((r) => r.start), ids.ranges.map((r) => r.end), at, forgetUpTo]);
  }

  async acceptedSince(since: number): Promise<AcceptedRange[]> {
    return this.#reports.acceptedSince(since);
  }

  async getSetting(key: string): Promise<string | undefined> {
    return (await this.#q<{ value: string }>(`SELECT value FROM settings WHERE project = $1 AND key = $2`, [this.project, key]))[0]?.value;
  }

  async setSetting(key: string, value: string): Promise<void> {
    await this.#q(Q.SET_SETTING, [this.project, key, value]);
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
