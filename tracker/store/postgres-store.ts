import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { InputError, StorageError } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import { BannedError, LeaseError, NickTakenError } from '../client/errors.js';
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
  SCHEMA_VERSION,
  packItems,
  parseStoredRanges,
  retryAfterMsFor,
  storedRanges,
} from './item-store.js';
import { type MediaUrl, type ReportedMedia, DEFAULT_MEDIA_ITEM_SIZE, SeenUrls, mediaPriority, mediaToStore, seqFilter, seqRanges, uniqueMedia } from './media-urls.js';
import { type KindProgress, type WorkRows, buildWorkProgress } from './deadline.js';
import { type HistoryRow, type RatePoint, HISTORY_BUCKET_MS, HISTORY_RETENTION_MS, ROLLUP_KEY, ROLLUP_LAG_MS, buildHistory, buildStats } from './stats.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project TEXT NOT NULL,
  ranges TEXT NOT NULL,
  id_count BIGINT NOT NULL,
  finished TEXT NOT NULL DEFAULT '[]',
  finished_count BIGINT NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'queued',
  lease_id TEXT,
  node_id BIGINT,
  lease_expires_at BIGINT,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  done_at BIGINT,
  done_stats TEXT
);
CREATE INDEX IF NOT EXISTS items_queue ON items (project, state, id);
CREATE UNIQUE INDEX IF NOT EXISTS items_lease ON items (lease_id) WHERE lease_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_expiry ON items (project, lease_expires_at) WHERE state = 'claimed';
CREATE TABLE IF NOT EXISTS nodes (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  project TEXT NOT NULL,
  nick TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  items_done BIGINT NOT NULL DEFAULT 0,
  ids_done BIGINT NOT NULL DEFAULT 0,
  bytes_done BIGINT NOT NULL DEFAULT 0,
  last_seen_at BIGINT
);
CREATE INDEX IF NOT EXISTS nodes_nick ON nodes (project, nick);
CREATE TABLE IF NOT EXISTS bans (project TEXT NOT NULL, nick TEXT NOT NULL, reason TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (project, nick));
CREATE TABLE IF NOT EXISTS events (project TEXT NOT NULL, at BIGINT NOT NULL, node_id BIGINT NOT NULL, ids BIGINT NOT NULL, bytes BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS events_at ON events (project, at);
CREATE TABLE IF NOT EXISTS settings (project TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (project, key));
CREATE TABLE IF NOT EXISTS rate_history (project TEXT NOT NULL, bucket BIGINT NOT NULL, ids BIGINT NOT NULL, bytes BIGINT NOT NULL, PRIMARY KEY (project, bucket));
`;

/** Schema 2 (issue 13): item kinds and priorities, and the project-wide media URL table. */
const MEDIA_SCHEMA = `
ALTER TABLE items ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'posts';
ALTER TABLE items ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS items_claim ON items (project, state, priority, id);
CREATE TABLE IF NOT EXISTS media_urls (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, project TEXT NOT NULL, url_hash BYTEA NOT NULL UNIQUE,
  url TEXT NOT NULL, priority SMALLINT NOT NULL, item_id BIGINT);
CREATE INDEX IF NOT EXISTS media_urls_pending ON media_urls (project, priority, seq) WHERE item_id IS NULL;
`;
const INSERT_MEDIA = `INSERT INTO media_urls (project, url_hash, url, priority)
  SELECT $1, h, u, p FROM unnest($2::bytea[], $3::text[], $4::smallint[]) WITH ORDINALITY AS t (h, u, p, o) ORDER BY o
  ON CONFLICT (url_hash) DO NOTHING RETURNING seq`;

const EXPIRE = `
WITH finished AS (
  UPDATE items SET state = 'done', lease_id = NULL, node_id = NULL, lease_expires_at = NULL
  WHERE project = $1 AND state = 'claimed' AND lease_expires_at < $2 AND finished_count >= id_count RETURNING 1),
requeued AS (
  UPDATE items SET state = 'queued', lease_id = NULL, node_id = NULL, lease_expires_at = NULL
  WHERE project = $1 AND state = 'claimed' AND lease_expires_at < $2 AND finished_count < id_count RETURNING 1)
SELECT (SELECT count(*) FROM finished) + (SELECT count(*) FROM requeued) AS n`;

const CLAIM = `
WITH picked AS (
  SELECT id FROM items WHERE project = $1 AND state = 'queued' AND priority BETWEEN $5 AND $6 ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE items i SET state = 'claimed', lease_id = $2, node_id = $3, lease_expires_at = $4, attempts = attempts + 1
FROM picked WHERE i.id = picked.id
RETURNING i.id, i.ranges, i.finished, i.kind`;
/** CLAIM with the highest item id first within a priority (project order `newest`, issue 14). */
const CLAIM_NEWEST = `
WITH picked AS (
  SELECT id FROM items WHERE project = $1 AND state = 'queued' AND priority BETWEEN $5 AND $6 ORDER BY priority, id DESC LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE items i SET state = 'claimed', lease_id = $2, node_id = $3, lease_expires_at = $4, attempts = attempts + 1
FROM picked WHERE i.id = picked.id
RETURNING i.id, i.ranges, i.finished, i.kind`;

/** Guarded write: applies only if the lease is still live and `finished` unchanged since it was read. */
const LEASE_GUARD = `id = $1 AND lease_id = $2 AND state = 'claimed' AND node_id = $3 AND lease_expires_at >= $4 AND finished = $5`;
const CREDIT = `
n AS (UPDATE nodes SET ids_done = ids_done + $6::bigint, bytes_done = LEAST(bytes_done + $7::bigint, 9007199254740991),
        items_done = items_done + $8::bigint, last_seen_at = $4 WHERE id = $3 AND EXISTS (SELECT 1 FROM u)),
e AS (INSERT INTO events (project, at, node_id, ids, bytes) SELECT $9, $4, $3, $6::bigint, $7::bigint FROM u WHERE $6::bigint + $7::bigint > 0)
SELECT count(*)::int AS n FROM u`;

interface LeaseRow {
  id: number;
  node_id: number | null;
  state: string;
  lease_expires_at: number | null;
  ranges: string;
  finished: string;
  finished_count: number;
  id_count: number;
  kind: string;
}

/** Parses BIGINT (int8) columns as numbers; IDs and counts stay below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * The shared store: a pg Pool (owned; `close()` ends it). Several tracker processes may use one
 * database: claims use `FOR UPDATE SKIP LOCKED`, every other transition is one guarded
 * statement (compare-and-set on the lease and the finished ranges), retried if it lost a race.
 */
export class PostgresItemStore implements ItemStore {
  readonly kind = 'postgres' as const;
  readonly project: string;
  #pool: pg.Pool;
  #schema: string;
  #seen: SeenUrls;

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
  }

  async #q<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    try {
      return (await this.#pool.query<R>(text, values)).rows;
    } catch (err) {
      throw new StorageError(`tracker database: ${(err as Error).message}`, { cause: err });
    }
  }

  async init(): Promise<void> {
    const client = await this.#pool.connect().catch((err: Error) => {
      throw new StorageError(`cannot connect to the tracker database: ${err.message}`, { cause: err });
    });
    try {
      await client.query('BEGIN');
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('lifeboat-tracker-schema'))`);
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.#schema}"`);
      await client.query(SCHEMA);
      await client.query(MEDIA_SCHEMA);
      const row = (await client.query(`SELECT value FROM meta WHERE key = 'schema_version'`)).rows[0] as { value: string } | undefined;
      if (row && Number(row.value) > SCHEMA_VERSION) {
        throw new StorageError(`tracker database schema ${row.value} is newer than this lifeboat (${SCHEMA_VERSION}); upgrade lifeboat`);
      }
      await client.query(`INSERT INTO meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [
        String(SCHEMA_VERSION),
      ]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err instanceof StorageError ? err : new StorageError(`tracker database: ${(err as Error).message}`, { cause: err });
    } finally {
      client.release();
    }
  }

  async seed(items: Iterable<RangeSet>): Promise<{ items: number; ids: number }> {
    return this.#seedTx(async () => items);
  }

  async seedNew(ids: RangeSet, itemSize: number): Promise<SeedResult> {
    let skipped = 0;
    const result = await this.#seedTx(async (client) => {
      // Seeds of one project take turns, so two at once cannot both add the same IDs.
      await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`lifeboat-seed:${this.#schema}:${this.project}`]);
      // The project's IDs as disjoint ranges, joined in SQL (gaps and islands): few rows however many items.
      const held = await client.query<{ s: string; e: string }>(
        `WITH r AS (SELECT (x->>0)::bigint AS s, (x->>1)::bigint AS e FROM items, jsonb_array_elements(ranges::jsonb) AS x WHERE project = $1 AND kind = 'posts'),
         o AS (SELECT s, e, CASE WHEN s <= MAX(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1 THEN 0 ELSE 1 END AS brk FROM r),
         g AS (SELECT s, e, SUM(brk) OVER (ORDER BY s, e) AS grp FROM o)
         SELECT MIN(s) AS s, MAX(e) AS e FROM g GROUP BY grp`,
        [this.project],
      );
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

  async #seedTx(prepare: (client: pg.PoolClient) => Promise<Iterable<RangeSet>>): Promise<{ items: number; ids: number }> {
    const client = await this.#pool.connect();
    let count = 0;
    let ids = 0;
    const flush = async (ranges: string[], sizes: number[]) => {
      await client.query(`INSERT INTO items (project, ranges, id_count) SELECT $1, r, c FROM unnest($2::text[], $3::bigint[]) AS t (r, c)`, [
        this.project,
        ranges,
        sizes,
      ]);
    };
    try {
      await client.query('BEGIN');
      const items = await prepare(client);
      let ranges: string[] = [];
      let sizes: number[] = [];
      for (const set of items) {
        if (set.isEmpty) continue;
        ranges.push(storedRanges(set));
        sizes.push(set.size);
        count++;
        ids += set.size;
        if (ranges.length >= 20_000) {
          await flush(ranges, sizes);
          ranges = [];
          sizes = [];
        }
      }
      if (ranges.length > 0) await flush(ranges, sizes);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw new StorageError(`seeding the tracker database failed: ${(err as Error).message}`, { cause: err });
    } finally {
      client.release();
    }
    return { items: count, ids };
  }

  async registerNode({ nick, tokenHash, now }: { nick: string; tokenHash: string; now: number }): Promise<NodeRecord> {
    // One owner per nick (issue 11 §5). A lock on (project, nick) for the transaction: two
    // registrations of one nick at once are serialised, and the second sees the first's row.
    const client = await this.#pool.connect().catch((err: Error) => {
      throw new StorageError(`tracker database: ${err.message}`, { cause: err });
    });
    try {
      await client.query('BEGIN');
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('lifeboat-nick'), hashtext($1 || '/' || $2))`, [this.project, nick]);
      const seen = (await client.query<{ banned: boolean; owner: number | null; owner_hash: string | null; token_used: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM bans WHERE project = $1 AND nick = $2) AS banned,
                (SELECT id FROM nodes WHERE project = $1 AND nick = $2 ORDER BY id LIMIT 1) AS owner,
                (SELECT token_hash FROM nodes WHERE project = $1 AND nick = $2 ORDER BY id LIMIT 1) AS owner_hash,
                EXISTS (SELECT 1 FROM nodes WHERE project = $1 AND token_hash = $3) AS token_used`,
        [this.project, nick, tokenHash],
      )).rows[0]!;
      if (seen.banned) throw new BannedError(nick);
      if (seen.owner !== null && seen.owner_hash === tokenHash) {
        await client.query('COMMIT');
        return { id: Number(seen.owner), nick, banned: false };
      }
      if (seen.owner !== null) throw new NickTakenError(nick);
      if (seen.token_used) throw new InputError('this token is registered under another nick; let the node choose a fresh one', { code: 'E_TOKEN_TAKEN' });
      const rows = (await client.query<{ id: number }>(`INSERT INTO nodes (project, nick, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id`, [this.project, nick, tokenHash, now])).rows;
      await client.query('COMMIT');
      return { id: rows[0]!.id, nick, banned: false };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if (err instanceof BannedError || err instanceof NickTakenError || err instanceof InputError) throw err;
      throw new StorageError(`tracker database: ${(err as Error).message}`, { cause: err });
    } finally {
      client.release();
    }
  }

  async authenticate(tokenHash: string): Promise<NodeRecord | undefined> {
    const rows = await this.#q<{ id: number; nick: string; banned: boolean }>(
      `SELECT n.id, n.nick, b.nick IS NOT NULL AS banned FROM nodes n
       LEFT JOIN bans b ON b.project = n.project AND b.nick = n.nick WHERE n.token_hash = $1 AND n.project = $2`,
      [tokenHash, this.project],
    );
    return rows[0];
  }

  async #expire(now: number): Promise<number> {
    return Number((await this.#q<{ n: number }>(EXPIRE, [this.project, now]))[0]?.n ?? 0);
  }

  async expireLeases(now: number): Promise<number> {
    await this.#rollup(now);
    await this.#q(`DELETE FROM events WHERE project = $1 AND at < $2`, [this.project, now - EVENT_RETENTION_MS]);
    return this.#expire(now);
  }

  /**
   * Rolls events older than ROLLUP_LAG_MS into rate_history once each: tracker processes take
   * turns (an advisory lock) and move the watermark in the same transaction. Runs on the expiry
   * timer, never on a node's request, so heartbeats never queue on a shared history row.
   */
  async #rollup(now: number): Promise<void> {
    const client = await this.#pool.connect().catch((err: Error) => {
      throw new StorageError(`tracker database: ${err.message}`, { cause: err });
    });
    try {
      await client.query('BEGIN');
      await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`lifeboat-rollup:${this.#schema}:${this.project}`]);
      const row = (await client.query<{ value: string }>(`SELECT value FROM settings WHERE project = $1 AND key = $2`, [this.project, ROLLUP_KEY])).rows[0];
      const from = Number(row?.value ?? 0);
      const to = now - ROLLUP_LAG_MS;
      if (to > from) {
        await client.query(
          `INSERT INTO rate_history (project, bucket, ids, bytes)
           SELECT project, (at / ${HISTORY_BUCKET_MS}) * ${HISTORY_BUCKET_MS}, SUM(ids), SUM(bytes) FROM events WHERE project = $1 AND at >= $2 AND at < $3 GROUP BY 1, 2
           ON CONFLICT (project, bucket) DO UPDATE SET ids = rate_history.ids + EXCLUDED.ids, bytes = rate_history.bytes + EXCLUDED.bytes`,
          [this.project, from, to],
        );
        await client.query(`INSERT INTO settings (project, key, value) VALUES ($1, $2, $3) ON CONFLICT (project, key) DO UPDATE SET value = EXCLUDED.value`, [
          this.project,
          ROLLUP_KEY,
          String(to),
        ]);
        await client.query(`DELETE FROM rate_history WHERE project = $1 AND bucket < $2`, [this.project, now - HISTORY_RETENTION_MS]);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw new StorageError(`rolling up the rate history failed: ${(err as Error).message}`, { cause: err });
    } finally {
      client.release();
    }
  }

  async rateHistory({ now, sinceMs }: { now: number; sinceMs: number }): Promise<RatePoint[]> {
    // One statement, one snapshot: the watermark and both sides of it are read together.
    const rows = await this.#q<HistoryRow>(
      `WITH w AS (SELECT COALESCE((SELECT value::bigint FROM settings WHERE project = $1 AND key = $3), 0) AS until)
       SELECT bucket, ids, bytes FROM rate_history WHERE project = $1 AND bucket >= $2
       UNION ALL
       SELECT (at / ${HISTORY_BUCKET_MS}) * ${HISTORY_BUCKET_MS}, SUM(ids), SUM(bytes) FROM events, w WHERE project = $1 AND at >= w.until GROUP BY 1`,
      [this.project, now - sinceMs - HISTORY_BUCKET_MS, ROLLUP_KEY],
    );
    return buildHistory({ rows, now, sinceMs: Math.min(sinceMs, HISTORY_RETENTION_MS) });
  }

  async extendLeases({ since, byMs }: { since: number; byMs: number }): Promise<number> {
    const rows = await this.#q<{ n: number }>(
      `WITH e AS (UPDATE items SET lease_expires_at = lease_expires_at + $1 WHERE project = $2 AND state = 'claimed' AND lease_expires_at >= $3 RETURNING 1)
       SELECT COUNT(*)::int AS n FROM e`,
      [byMs, this.project, since],
    );
    return Number(rows[0]?.n ?? 0);
  }

  async claim({ nodeId, now, leaseMs, only, order = 'oldest', mediaItemSize = DEFAULT_MEDIA_ITEM_SIZE }: ClaimOptions): Promise<ClaimResult> {
    const expired = await this.#expire(now);
    const claimSql = order === 'newest' ? CLAIM_NEWEST : CLAIM;
    const leaseId = randomUUID();
    const leaseExpiresAt = now + leaseMs;
    type Row = { id: number; ranges: string; finished: string; kind: string };
    let row: Row | undefined;
    // Post items first; then whichever media work comes first: a queued media item or pending URLs.
    if (only !== 'media') row = (await this.#q<Row>(claimSql, [this.project, leaseId, nodeId, leaseExpiresAt, 0, 0]))[0];
    if (!row && only !== 'posts') {
      const peek = (await this.#q<{ pending: number | null; queued: number | null }>(
        `SELECT (SELECT priority FROM media_urls WHERE project = $1 AND item_id IS NULL ORDER BY priority, seq LIMIT 1) AS pending,
                (SELECT priority FROM items WHERE project = $1 AND state = 'queued' AND priority >= 1 ORDER BY priority, id LIMIT 1) AS queued`,
        [this.project],
      ))[0]!;
      if (peek.pending !== null && (peek.queued === null || peek.pending < peek.queued)) {
        row = await this.#cutMediaItem({ priority: peek.pending, size: mediaItemSize, leaseId, nodeId, leaseExpiresAt });
      }
      row ??= (await this.#q<Row>(claimSql, [this.project, leaseId, nodeId, leaseExpiresAt, 1, 99]))[0];
    }
    if (!row) {
      const hi = only === 'posts' ? 0 : 99;
      const seen = (await this.#q<{ at: number | null; posts: boolean }>(
        `SELECT (SELECT MIN(lease_expires_at) FROM items WHERE project = $1 AND state = 'claimed' AND priority BETWEEN 0 AND $2) AS at,
                EXISTS (SELECT 1 FROM items WHERE project = $1 AND state = 'queued' AND priority = 0) AS posts`,
        [this.project, hi],
      ))[0];
      const earliest = seen?.at;
      if (earliest !== null && earliest !== undefined) return { kind: 'later', retryAfterMs: retryAfterMsFor(earliest, now), expired };
      // Post items still queued will report media: a media-only node waits for them.
      if (only === 'media' && seen?.posts) return { kind: 'later', retryAfterMs: 60_000, expired };
      return { kind: 'done', expired };
    }
    const ranges = parseStoredRanges(row.ranges).subtract(parseStoredRanges(row.finished));
    const kind = row.kind === 'media' ? 'media' : 'posts';
    const urls = kind === 'media' ? { urls: await this.#urlsOf(ranges) } : {};
    return { kind: 'lease', lease: { itemId: Number(row.id), kind, ranges, leaseId, leaseExpiresAt, ...urls }, expired };
  }

  /**
   * Cuts up to `size` pending URLs of one priority into a media item leased at once. Rows are
   * taken with SKIP LOCKED: two tracker processes cutting at once take disjoint URLs.
   */
  async #cutMediaItem(o: { priority: number; size: number; leaseId: string; nodeId: number; leaseExpiresAt: number }) {
    return this.#tx(async (client) => {
      const seqs = (await client.query<{ seq: number }>(
        `SELECT seq FROM media_urls WHERE project = $1 AND item_id IS NULL AND priority = $2 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED`,
        [this.project, o.priority, o.size],
      )).rows.map((r) => Number(r.seq));
      if (seqs.length === 0) return undefined;
      const ranges = storedRanges(seqRanges(seqs));
      const id = Number((await client.query<{ id: number }>(
        `INSERT INTO items (project, ranges, id_count, kind, priority, state, lease_id, node_id, lease_expires_at, attempts)
         VALUES ($1, $2, $3, 'media', $4, 'claimed', $5, $6, $7, 1) RETURNING id`,
        [this.project, ranges, seqs.length, o.priority, o.leaseId, o.nodeId, o.leaseExpiresAt],
      )).rows[0]!.id);
      await client.query(`UPDATE media_urls SET item_id = $1 WHERE seq = ANY($2::bigint[])`, [id, seqs]);
      return { id, ranges, finished: '[]', kind: 'media' };
    });
  }

  async #urlsOf(ranges: RangeSet): Promise<MediaUrl[]> {
    const { sql, values } = seqFilter(ranges, (i) => `$${i + 2}`);
    const rows = await this.#q<MediaUrl>(`SELECT seq, url FROM media_urls WHERE project = $1 AND (${sql}) ORDER BY seq`, [this.project, ...values]);
    return rows.map((r) => ({ seq: Number(r.seq), url: r.url }));
  }

  /** Runs `fn` in one transaction on one connection; commits, or rolls back on a throw. */
  async #tx<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect().catch((err: Error) => {
      throw new StorageError(`tracker database: ${err.message}`, { cause: err });
    });
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if (err instanceof LeaseError || err instanceof StorageError) throw err;
      throw new StorageError(`tracker database: ${(err as Error).message}`, { cause: err });
    } finally {
      client.release();
    }
  }

  /**
   * Inserts never-seen URLs in one statement (the unique hash is the dedupe) inside the caller's
   * transaction; returns how many were new and the hashes to remember once it commits.
   */
  async #insertMedia(client: pg.PoolClient, media: readonly ReportedMedia[], requeue: boolean): Promise<{ fresh: number; hashes: Buffer[] }> {
    const { todo, hashes } = mediaToStore(this.project, media, this.#seen, requeue);
    if (todo.length === 0) return { fresh: 0, hashes };
    const inserted = await client.query(INSERT_MEDIA, [this.project, hashes, todo.map((m) => m.url), todo.map((m) => mediaPriority(m))]);
    let fresh = inserted.rowCount ?? 0;
    if (requeue) {
      const requeued = await client.query(
        `UPDATE media_urls SET item_id = NULL WHERE url_hash = ANY($1::bytea[]) AND item_id IN (SELECT id FROM items WHERE state = 'done')`,
        [hashes],
      );
      fresh += requeued.rowCount ?? 0;
    }
    return { fresh, hashes };
  }

  async queueMedia(media: readonly ReportedMedia[], options: { requeue?: boolean } = {}): Promise<{ queued: number; known: number }> {
    const { fresh, hashes } = await this.#tx((client) => this.#insertMedia(client, media, options.requeue ?? false));
    this.#seen.addAll(hashes);
    return { queued: fresh, known: uniqueMedia(media).length - fresh };
  }

  async mediaCounts(): Promise<{ urls: number; done: number; pending: number }> {
    const row = (await this.#q<{ urls: number; done: number; pending: number }>(
      `SELECT COUNT(*)::bigint AS urls, COUNT(*) FILTER (WHERE m.item_id IS NULL)::bigint AS pending, COUNT(*) FILTER (WHERE i.state = 'done')::bigint AS done
       FROM media_urls m LEFT JOIN items i ON i.id = m.item_id WHERE m.project = $1`,
      [this.project],
    ))[0]!;
    return { urls: row.urls, done: row.done, pending: row.pending };
  }

  async #byLease(leaseId: string): Promise<LeaseRow | undefined> {
    const rows = await this.#q<LeaseRow>(
      `SELECT id, node_id, state, lease_expires_at, ranges, finished, finished_count, id_count, kind FROM items WHERE lease_id = $1 AND project = $2`,
      [leaseId, this.project],
    );
    return rows[0];
  }

  #checkLive(row: LeaseRow | undefined, leaseId: string, nodeId: number, now: number): LeaseRow {
    if (!row || row.state !== 'claimed') throw new LeaseError(`lease ${leaseId} is not active (expired, finished or superseded)`);
    if (row.node_id !== nodeId) throw new LeaseError(`lease ${leaseId} belongs to another node`, { code: 'E_LEASE_NOT_YOURS' });
    if ((row.lease_expires_at ?? 0) < now) throw new LeaseError(`lease ${leaseId} expired; claim again`);
    return row;
  }

  /** Runs a read → guarded-write transition until the write applies or the lease turns out stale. */
  async #guarded<T>(leaseId: string, step: (row: LeaseRow | undefined) => Promise<T | undefined>): Promise<T> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const result = await step(await this.#byLease(leaseId));
      if (result !== undefined) return result;
    }
    throw new StorageError(`lease ${leaseId}: too many concurrent updates; try again`);
  }

  async heartbeat({ nodeId, leaseId, finished, now, leaseMs, media = [] }: HeartbeatOptions) {
    const leaseExpiresAt = now + leaseMs;
    const write = (row: LeaseRow) => {
      const all = parseStoredRanges(row.ranges);
      const before = parseStoredRanges(row.finished);
      const after = before.union(finished.intersect(all));
      const added = row.kind === 'posts' ? after.size - before.size : 0;
      return {
        remaining: all.subtract(after),
        text: `WITH u AS (UPDATE items SET finished = $10, finished_count = $11, lease_expires_at = $12 WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`,
        values: [row.id, leaseId, nodeId, now, row.finished, added, 0, 0, this.project, storedRanges(after), after.size, leaseExpiresAt],
      };
    };
    // URLs this process knows are stored need no transaction: the one-statement path below serves.
    const unseen = mediaToStore(this.project, media, this.#seen, false).todo;
    if (unseen.length > 0) {
      // Media and the finished IDs they came from in one transaction; the item row is locked first.
      return this.#tx(async (client) => {
        const found = (await client.query<LeaseRow>(
          `SELECT id, node_id, state, lease_expires_at, ranges, finished, finished_count, id_count, kind FROM items WHERE lease_id = $1 AND project = $2 FOR UPDATE`,
          [leaseId, this.project],
        )).rows[0];
        const row = this.#checkLive(found, leaseId, nodeId, now);
        const stored = await this.#insertMedia(client, unseen, false);
        const w = write(row);
        await client.query(w.text, w.values);
        return { result: { leaseExpiresAt, remaining: w.remaining, mediaQueued: stored.fresh }, hashes: stored.hashes };
      }).then(({ result, hashes }) => {
        this.#seen.addAll(hashes); // committed: from now on these are turned away in memory
        return result;
      });
    }
    return this.#guarded(leaseId, async (found) => {
      const w = write(this.#checkLive(found, leaseId, nodeId, now));
      const rows = await this.#q<{ n: number }>(w.text, w.values);
      return rows[0]?.n === 1 ? { leaseExpiresAt, remaining: w.remaining, mediaQueued: 0 } : undefined;
    });
  }

  async lookupLease({ nodeId, leaseId, now }: { nodeId: number; leaseId: string; now: number }): Promise<LeaseLookup> {
    const row = await this.#byLease(leaseId);
    if (row?.state === 'done' && row.node_id === nodeId) return { itemId: Number(row.id), state: 'done' };
    return { itemId: Number(this.#checkLive(row, leaseId, nodeId, now).id), state: 'live' };
  }

  async done({ nodeId, leaseId, stats, now }: { nodeId: number; leaseId: string; stats: DoneStats; now: number }) {
    return this.#guarded(leaseId, async (found) => {
      if (found?.state === 'done' && found.node_id === nodeId) return { duplicate: true };
      const row = this.#checkLive(found, leaseId, nodeId, now);
      const rows = await this.#q<{ n: number }>(
        `WITH u AS (UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = $4, done_stats = $10
                    WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`,
        [row.id, leaseId, nodeId, now, row.finished, row.kind === 'posts' ? row.id_count - row.finished_count : 0, stats.bytes, 1, this.project, JSON.stringify(stats)],
      );
      return rows[0]?.n === 1 ? { duplicate: false } : undefined;
    });
  }

  async release({ nodeId, leaseId, finished, error, now }: ReleaseOptions) {
    return this.#guarded(leaseId, async (found) => {
      const row = this.#checkLive(found, leaseId, nodeId, now);
      const all = parseStoredRanges(row.ranges);
      const before = parseStoredRanges(row.finished);
      const after = before.union((finished ?? new RangeSet()).intersect(all));
      const rows = await this.#q<{ n: number }>(
        `WITH u AS (UPDATE items SET state = CASE WHEN $11::bigint >= id_count THEN 'done' ELSE 'queued' END,
                      finished = $10, finished_count = $11::bigint, lease_id = NULL, node_id = NULL, lease_expires_at = NULL,
                      last_error = COALESCE($12, last_error)
                    WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`,
        [row.id, leaseId, nodeId, now, row.finished, row.kind === 'posts' ? after.size - before.size : 0, 0, 0, this.project, storedRanges(after), after.size, error ?? null],
      );
      return rows[0]?.n === 1 ? { remaining: all.subtract(after) } : undefined;
    });
  }

  async stats({ now, windowMs }: { now: number; windowMs: number }): Promise<TrackerStats> {
    const since = now - windowMs;
    // Read-only: events are rolled up into the rate history, then pruned, by expireLeases.
    const [itemCounts, nickTotals, nickRates, active] = await Promise.all([
      this.#q<{ state: string; items: number; ids: number; finished: number }>(
        `SELECT state, COUNT(*) AS items, COALESCE(SUM(id_count), 0)::bigint AS ids, COALESCE(SUM(finished_count), 0)::bigint AS finished
         FROM items WHERE project = $1 AND kind = 'posts' GROUP BY state`,
        [this.project],
      ),
      this.#q<{ nick: string; items: number; ids: number; bytes: number }>(
        `SELECT nick, SUM(items_done)::bigint AS items, SUM(ids_done)::bigint AS ids, SUM(bytes_done)::bigint AS bytes FROM nodes WHERE project = $1 GROUP BY nick`,
        [this.project],
      ),
      this.#q<{ nick: string; ids: number }>(
        `SELECT n.nick, SUM(e.ids)::bigint AS ids FROM events e JOIN nodes n ON n.id = e.node_id WHERE e.project = $1 AND e.at >= $2 GROUP BY n.nick`,
        [this.project, since],
      ),
      this.#q<{ n: number }>(`SELECT COUNT(DISTINCT node_id) AS n FROM items WHERE project = $1 AND state = 'claimed' AND lease_expires_at >= $2`, [
        this.project,
        now,
      ]),
    ]);
    const rows = { itemCounts, nickTotals, nickRates, activeNodes: Number(active[0]?.n ?? 0) };
    return buildStats({ project: this.project, rows, now, windowMs });
  }

  async workProgress({ now, windowMs }: { now: number; windowMs: number }): Promise<{ kinds: KindProgress[]; bytesPerSec: number }> {
    const [items, pending, windowBytes] = await Promise.all([
      this.#q<WorkRows['items'][number]>(
        `SELECT priority, SUM(id_count)::bigint AS units, SUM(finished_count)::bigint AS finished,
                SUM(CASE WHEN state = 'done' THEN finished_count ELSE 0 END)::bigint AS sample_units,
                SUM(CASE WHEN state = 'done' THEN COALESCE((done_stats::jsonb->>'bytes')::bigint, 0) ELSE 0 END)::bigint AS sample_bytes
         FROM items WHERE project = $1 GROUP BY priority`,
        [this.project],
      ),
      this.#q<WorkRows['pending'][number]>(`SELECT priority, COUNT(*)::bigint AS n FROM media_urls WHERE project = $1 AND item_id IS NULL GROUP BY priority`, [this.project]),
      this.#q<{ n: string; units: string; events: string; first_at: string | null; last_at: string | null }>(
        `SELECT COALESCE(SUM(bytes), 0)::bigint AS n, COALESCE(SUM(ids), 0)::bigint AS units, COUNT(*)::bigint AS events, MIN(at) AS first_at, MAX(at) AS last_at
         FROM events WHERE project = $1 AND at >= $2`,
        [this.project, now - windowMs],
      ),
    ]);
    const w = windowBytes[0];
    const windowEvents = { count: w?.events ?? 0, firstAt: w?.first_at ?? null, lastAt: w?.last_at ?? null };
    return buildWorkProgress({ items, pending, windowBytes: w?.n ?? 0, windowUnits: w?.units ?? 0, windowEvents }, windowMs, now);
  }

  async ban({ nick, reason, now }: { nick: string; reason: string; now: number }) {
    const rows = await this.#q<{ n: number }>(
      `WITH b AS (INSERT INTO bans (project, nick, reason, created_at) VALUES ($1, $2, $3, $4)
                  ON CONFLICT (project, nick) DO UPDATE SET reason = EXCLUDED.reason RETURNING 1),
       r AS (UPDATE items SET state = 'queued', lease_id = NULL, node_id = NULL, lease_expires_at = NULL
             WHERE project = $1 AND state = 'claimed' AND node_id IN (SELECT id FROM nodes WHERE project = $1 AND nick = $2) RETURNING 1)
       SELECT (SELECT count(*) FROM r)::int AS n, (SELECT count(*) FROM b)::int AS b`,
      [this.project, nick, reason, now],
    );
    return { releasedItems: rows[0]?.n ?? 0 };
  }

  async unban(nick: string): Promise<void> {
    await this.#q(`DELETE FROM bans WHERE project = $1 AND nick = $2`, [this.project, nick]);
  }

  async getSetting(key: string): Promise<string | undefined> {
    return (await this.#q<{ value: string }>(`SELECT value FROM settings WHERE project = $1 AND key = $2`, [this.project, key]))[0]?.value;
  }

  async setSetting(key: string, value: string): Promise<void> {
    await this.#q(
      `INSERT INTO settings (project, key, value) VALUES ($1, $2, $3) ON CONFLICT (project, key) DO UPDATE SET value = EXCLUDED.value`,
      [this.project, key, value],
    );
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
