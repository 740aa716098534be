import { HISTORY_BUCKET_MS } from './stats.js';

/**
 * The PostgreSQL store's statements (postgres-store.ts runs them). Parameters are numbered as the
 * comment over each says; the store's rules live in rules.ts.
 */

/** $1 project, $2 hashes, $3 urls, $4 priorities: the new URLs get a row each, in report order. */
export const INSERT_MEDIA = `INSERT INTO media_urls (project, url_hash, url, priority)
  SELECT $1, h, u, p FROM unnest($2::bytea[], $3::text[], $4::smallint[]) WITH ORDINALITY AS t (h, u, p, o) ORDER BY o
  ON CONFLICT (url_hash) DO NOTHING RETURNING seq`;

/** $1 hashes: URLs whose media item is done are pending again (`--requeue`). */
export const REQUEUE_MEDIA = `UPDATE media_urls SET item_id = NULL WHERE url_hash = ANY($1::bytea[]) AND item_id IN (SELECT id FROM items WHERE state = 'done')`;

/**
 * $1 project, $2 now: overdue leases end — done when every ID was reported finished, else queued
 * with the remainder. Rows another transaction holds are skipped (it is expiring or updating them),
 * so claims in several processes never wait on each other here.
 */
export const EXPIRE = `
WITH overdue AS (
  SELECT id FROM items WHERE project = $1 AND state = 'claimed' AND lease_expires_at < $2 FOR UPDATE SKIP LOCKED),
u AS (
  UPDATE items i SET state = CASE WHEN i.finished_count >= i.id_count THEN 'done' ELSE 'queued' END,
    lease_id = NULL, node_id = NULL, lease_expires_at = NULL
  FROM overdue WHERE i.id = overdue.id RETURNING 1)
SELECT count(*)::int AS n FROM u`;

/** $1 project, $2 lease id, $3 node, $4 expiry, $5..$6 priorities: leases the first queued item (`order` = id ASC or DESC). */
export function claimSql(order: 'oldest' | 'newest'): string {
  return `
WITH picked AS (
  SELECT id FROM items WHERE project = $1 AND state = 'queued' AND priority BETWEEN $5 AND $6
  ORDER BY priority, id${order === 'newest' ? ' DESC' : ''} LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE items i SET state = 'claimed', lease_id = $2, node_id = $3, lease_expires_at = $4, attempts = attempts + 1
FROM picked WHERE i.id = picked.id
RETURNING i.id, i.ranges, i.finished, i.kind`;
}

/** $1 project: the priority of the first pending URL and of the first queued media item. */
export const PEEK_MEDIA = `SELECT (SELECT priority FROM media_urls WHERE project = $1 AND item_id IS NULL ORDER BY priority, seq LIMIT 1) AS pending,
  (SELECT priority FROM items WHERE project = $1 AND state = 'queued' AND priority >= 1 ORDER BY priority, id LIMIT 1) AS queued`;

/** $1 project, $2 priority, $3 size: the pending URLs a new media item takes (others' locked rows skipped). */
export const PENDING_TAKE = `SELECT seq FROM media_urls WHERE project = $1 AND item_id IS NULL AND priority = $2 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED`;

/** $1 project, $2 ranges, $3 count, $4 priority, $5 lease id, $6 node, $7 expiry: a media item, leased at once. */
export const INSERT_MEDIA_ITEM = `INSERT INTO items (project, ranges, id_count, kind, priority, state, lease_id, node_id, lease_expires_at, attempts)
  VALUES ($1, $2, $3, 'media', $4, 'claimed', $5, $6, $7, 1) RETURNING id`;

/** $1 project, $2 highest priority: when the next lease expires, and whether post items are queued. */
export const NOTHING_QUEUED = `SELECT (SELECT MIN(lease_expires_at) FROM items WHERE project = $1 AND state = 'claimed' AND priority BETWEEN 0 AND $2) AS at,
  EXISTS (SELECT 1 FROM items WHERE project = $1 AND state = 'queued' AND priority = 0) AS posts`;

const LEASE_COLUMNS = `id, node_id, state, lease_expires_at, ranges, finished, finished_count, id_count, kind`;
/** $1 lease id, $2 project. */
export const BY_LEASE = `SELECT ${LEASE_COLUMNS} FROM items WHERE lease_id = $1 AND project = $2`;
export const BY_LEASE_FOR_UPDATE = `${BY_LEASE} FOR UPDATE`;

/** Guarded write: applies only if the lease is still live and `finished` unchanged since it was read. */
const LEASE_GUARD = `id = $1 AND lease_id = $2 AND state = 'claimed' AND node_id = $3 AND lease_expires_at >= $4 AND finished = $5`;
/** Credits the node ($6 IDs, $7 bytes, $8 items) and logs the event ($9 project) when the guarded update `u` applied. */
const CREDIT = `
n AS (UPDATE nodes SET ids_done = ids_done + $6::bigint, bytes_done = LEAST(bytes_done + $7::bigint, 9007199254740991),
        items_done = items_done + $8::bigint, last_seen_at = $4 WHERE id = $3 AND EXISTS (SELECT 1 FROM u)),
e AS (INSERT INTO events (project, at, node_id, ids, bytes) SELECT $9, $4, $3, $6::bigint, $7::bigint FROM u WHERE $6::bigint + $7::bigint > 0)
SELECT count(*)::int AS n FROM u`;

/** Guarded ($1..$9), then $10 finished, $11 its size, $12 the new expiry. */
export const HEARTBEAT = `WITH u AS (UPDATE items SET finished = $10, finished_count = $11, lease_expires_at = $12 WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`;
/** Guarded ($1..$9), then $10 done_stats. */
export const DONE = `WITH u AS (UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = $4, done_stats = $10
  WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`;
/** Guarded ($1..$9), then $10 finished, $11 its size, $12 the error (fail) or null. */
export const RELEASE = `WITH u AS (UPDATE items SET state = CASE WHEN $11::bigint >= id_count THEN 'done' ELSE 'queued' END,
    finished = $10, finished_count = $11::bigint, lease_id = NULL, node_id = NULL, lease_expires_at = NULL, last_error = COALESCE($12, last_error)
  WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`;

/** $1 project: the project's post IDs as disjoint ranges, joined in SQL (gaps and islands): few rows however many items. */
export const HELD_RANGES = `WITH r AS (SELECT (x->>0)::bigint AS s, (x->>1)::bigint AS e FROM items, jsonb_array_elements(ranges::jsonb) AS x WHERE project = $1 AND kind = 'posts'),
  o AS (SELECT s, e, CASE WHEN s <= MAX(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1 THEN 0 ELSE 1 END AS brk FROM r),
  g AS (SELECT s, e, SUM(brk) OVER (ORDER BY s, e) AS grp FROM o)
  SELECT MIN(s) AS s, MAX(e) AS e FROM g GROUP BY grp`;

/** $1 project, $2 nick, $3 token hash: what a registration decides on (rules.ts registrationDecision). */
export const REGISTRATION_SEEN = `SELECT EXISTS (SELECT 1 FROM bans WHERE project = $1 AND nick = $2) AS banned,
  (SELECT id FROM nodes WHERE project = $1 AND nick = $2 ORDER BY id LIMIT 1) AS owner,
  (SELECT token_hash FROM nodes WHERE project = $1 AND nick = $2 ORDER BY id LIMIT 1) AS owner_hash,
  EXISTS (SELECT 1 FROM nodes WHERE project = $1 AND token_hash = $3) AS token_used`;

/** $1 project, $2 from, $3 to: events of [from, to) added into their history buckets. */
export const ROLLUP = `INSERT INTO rate_history (project, bucket, ids, bytes)
  SELECT project, (at / ${HISTORY_BUCKET_MS}) * ${HISTORY_BUCKET_MS}, SUM(ids), SUM(bytes) FROM events WHERE project = $1 AND at >= $2 AND at < $3 GROUP BY 1, 2
  ON CONFLICT (project, bucket) DO UPDATE SET ids = rate_history.ids + EXCLUDED.ids, bytes = rate_history.bytes + EXCLUDED.bytes`;

/** $1 project, $2 first bucket, $3 the watermark's settings key: one statement, one snapshot of both sides of it. */
export const HISTORY = `WITH w AS (SELECT COALESCE((SELECT value::bigint FROM settings WHERE project = $1 AND key = $3), 0) AS until)
  SELECT bucket, ids, bytes FROM rate_history WHERE project = $1 AND bucket >= $2
  UNION ALL
  SELECT (at / ${HISTORY_BUCKET_MS}) * ${HISTORY_BUCKET_MS}, SUM(ids), SUM(bytes) FROM events, w WHERE project = $1 AND at >= w.until GROUP BY 1`;

export const SET_SETTING = `INSERT INTO settings (project, key, value) VALUES ($1, $2, $3) ON CONFLICT (project, key) DO UPDATE SET value = EXCLUDED.value`;

/** The reads behind stats(): $1 project (and $2 since / now where named). */
export const STATS = {
  itemCounts: `SELECT state, COUNT(*) AS items, COALESCE(SUM(id_count), 0)::bigint AS ids, COALESCE(SUM(finished_count), 0)::bigint AS finished
    FROM items WHERE project = $1 AND kind = 'posts' GROUP BY state`,
  nickTotals: `SELECT nick, SUM(items_done)::bigint AS items, SUM(ids_done)::bigint AS ids, SUM(bytes_done)::bigint AS bytes FROM nodes WHERE project = $1 GROUP BY nick`,
  nickRates: `SELECT n.nick, SUM(e.ids)::bigint AS ids FROM events e JOIN nodes n ON n.id = e.node_id WHERE e.project = $1 AND e.at >= $2 GROUP BY n.nick`,
  activeNodes: `SELECT COUNT(DISTINCT node_id) AS n FROM items WHERE project = $1 AND state = 'claimed' AND lease_expires_at >= $2`,
  workItems: `SELECT priority, SUM(id_count)::bigint AS units, SUM(finished_count)::bigint AS finished,
      SUM(CASE WHEN state = 'done' THEN finished_count ELSE 0 END)::bigint AS sample_units,
      SUM(CASE WHEN state = 'done' THEN COALESCE((done_stats::jsonb->>'bytes')::bigint, 0) ELSE 0 END)::bigint AS sample_bytes
    FROM items WHERE project = $1 GROUP BY priority`,
  workPending: `SELECT priority, COUNT(*)::bigint AS n FROM media_urls WHERE project = $1 AND item_id IS NULL GROUP BY priority`,
  windowBytes: `SELECT COALESCE(SUM(bytes), 0)::bigint AS n, COALESCE(SUM(ids), 0)::bigint AS units, COUNT(*)::bigint AS events, MIN(at) AS first_at, MAX(at) AS last_at
    FROM events WHERE project = $1 AND at >= $2`,
  mediaCounts: `SELECT COUNT(*)::bigint AS urls, COUNT(*) FILTER (WHERE m.item_id IS NULL)::bigint AS pending, COUNT(*) FILTER (WHERE i.state = 'done')::bigint AS done
    FROM media_urls m LEFT JOIN items i ON i.id = m.item_id WHERE m.project = $1`,
} as const;

/** $1 project, $2 nick, $3 reason, $4 now: bans the nick and returns its leased items to the queue. */
export const BAN = `WITH b AS (INSERT INTO bans (project, nick, reason, created_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (project, nick) DO UPDATE SET reason = EXCLUDED.reason RETURNING 1),
  r AS (UPDATE items SET state = 'queued', lease_id = NULL, node_id = NULL, lease_expires_at = NULL
    WHERE project = $1 AND state = 'claimed' AND node_id IN (SELECT id FROM nodes WHERE project = $1 AND nick = $2) RETURNING 1)
  SELECT (SELECT count(*) FROM r)::int AS n, (SELECT count(*) FROM b)::int AS b`;
