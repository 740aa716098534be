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
export const REQUEUE_MEDIA = `UPDATE media_urls SET item_id = NULL, attempts = 0, failed_at = NULL WHERE url_hash = ANY($1::bytea[]) AND item_id IN (SELECT id FROM items WHERE state = 'done')`;

/**
 * $1 project, $2 now, $3 stall limit, $4 the reason for media URLs: overdue leases end — run out,
 * or no progress reported since $3 (counted on the holder, and the item marked with it: rules.ts
 * stallBarBefore) — done when every ID was reported finished, else queued with the remainder; an
 * unfinished media item's URLs count an attempt.
 * Rows another transaction holds are skipped (it is expiring or updating them), so claims in
 * several processes never wait on each other here.
 */
export const EXPIRE = `
WITH overdue AS (
  SELECT id, node_id, kind, finished_count < id_count AS unfinished, lease_expires_at >= $2 AS stalled FROM items
  WHERE project = $1 AND state = 'claimed' AND (lease_expires_at < $2 OR progress_at < $3) FOR UPDATE SKIP LOCKED),
s AS (
  UPDATE nodes n SET stalled_leases = n.stalled_leases + c.k
  FROM (SELECT node_id, count(*) AS k FROM overdue WHERE stalled GROUP BY node_id) c WHERE n.id = c.node_id),
m AS (
  UPDATE media_urls SET attempts = attempts + 1, last_error = $4
  WHERE failed_at IS NULL AND item_id IN (SELECT id FROM overdue WHERE kind = 'media' AND unfinished)),
u AS (
  UPDATE items i SET state = CASE WHEN i.finished_count >= i.id_count THEN 'done' ELSE 'queued' END,
    stalled_by = CASE WHEN overdue.stalled THEN overdue.node_id ELSE i.stalled_by END, stalled_at = CASE WHEN overdue.stalled THEN $2 ELSE i.stalled_at END,
    lease_id = NULL, node_id = NULL, lease_expires_at = NULL
  FROM overdue WHERE i.id = overdue.id RETURNING 1)
SELECT count(*)::int AS n FROM u`;

/**
 * $1 project, $2 lease id, $3 node, $4 expiry, $5..$6 priorities, $7 now: leases the first queued
 * item (`order` = id ASC or DESC), those that never failed first; `attempts` as before this lease. A recheck item waits for its `not_before` ($7, now).
 * Items the node stalled on are skipped; `own`: only those, once the bar lifted ($8: stalled_at
 * at or before it; rules.ts stallBarBefore).
 */
export function claimSql(order: 'oldest' | 'newest', own = false): string {
  const stall = own ? 'stalled_by = $3 AND stalled_at <= $8::bigint' : '(stalled_by IS NULL OR stalled_by <> $3)';
  return `
WITH picked AS (
  SELECT id FROM items WHERE project = $1 AND state = 'queued' AND priority BETWEEN $5 AND $6 AND (not_before IS NULL OR not_before <= $7::bigint) AND ${stall}
  ORDER BY priority, failures, id${order === 'newest' ? ' DESC' : ''} LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE items i SET state = 'claimed', lease_id = $2, node_id = $3, lease_expires_at = $4, progress_at = $7, attempts = attempts + 1
FROM picked WHERE i.id = picked.id
RETURNING i.id, i.ranges, i.finished, i.kind, i.attempts - 1 AS attempts, i.failures`;
}

/** $1 project, $2 node: the priority of the first pending URL, and the priority and failures of the first queued media item not barred for the node. */
export const PEEK_MEDIA = `WITH q AS (SELECT priority, failures FROM items WHERE project = $1 AND state = 'queued' AND priority >= 1 AND (stalled_by IS NULL OR stalled_by <> $2) ORDER BY priority, failures, id LIMIT 1)
  SELECT (SELECT priority FROM media_urls WHERE project = $1 AND item_id IS NULL ORDER BY priority, seq LIMIT 1) AS pending,
  (SELECT priority FROM q) AS queued, (SELECT failures FROM q) AS queued_failures`;

/** $1 project, $2 node: the node's live leases and the first to run out. */
export const LIVE_LEASES = `SELECT COUNT(*)::int AS n, MIN(lease_expires_at) AS at FROM items WHERE project = $1 AND state = 'claimed' AND node_id = $2`;
export const REFUSE_CLAIM = `UPDATE nodes SET refused_claims = refused_claims + 1 WHERE id = $1`;
/** $1 item, $2 max attempts: its URLs to give up on. */
export const GIVEN_UP = `SELECT seq FROM media_urls WHERE item_id = $1 AND failed_at IS NULL AND attempts >= $2::bigint`;
/** $1 now, $2 seqs. */
export const FAIL_URLS = `UPDATE media_urls SET failed_at = $1 WHERE seq = ANY($2::bigint[])`;
/** $1 now, $2 item. */
export const FINISH_GIVEN_UP = `UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = $1, lease_id = NULL, node_id = NULL, lease_expires_at = NULL WHERE id = $2`;
/** $1 finished, $2 its size, $3 item. */
export const GIVE_UP_PROGRESS = `UPDATE items SET finished = $1, finished_count = $2 WHERE id = $3`;
/** $1 item, $2 seqs, $3 reasons: one attempt for each URL of a failed media item left unfinished. */
export const ATTEMPT_URLS = `UPDATE media_urls m SET attempts = m.attempts + 1, last_error = t.reason
  FROM unnest($2::bigint[], $3::text[]) AS t (seq, reason) WHERE m.seq = t.seq AND m.item_id = $1`;
/** $1 item, $2 node: the item's media count and the node's quota window. */
export const MEDIA_BUDGET = `SELECT i.media_reported, n.media_window_at, n.media_window_count FROM items i, nodes n WHERE i.id = $1 AND n.id = $2`;
/** $1 item, $2 URLs taken. */
export const MEDIA_TAKEN = `UPDATE items SET media_reported = media_reported + $2 WHERE id = $1`;
/** $1 node, $2 refused, $3 window start, $4 window count. */
export const NODE_MEDIA = `UPDATE nodes SET refused_media = refused_media + $2, media_window_at = $3, media_window_count = $4 WHERE id = $1`;
export const REFUSE_MEDIA = `UPDATE nodes SET refused_media = refused_media + $2 WHERE id = $1`;
/** $1 hashes: those already in the table. */
export const MEDIA_KNOWN = `SELECT url_hash FROM media_urls WHERE url_hash = ANY($1::bytea[])`;

/** $1 project, $2 priority, $3 size: the pending URLs a new media item takes (others' locked rows skipped). */
export const PENDING_TAKE = `SELECT seq FROM media_urls WHERE project = $1 AND item_id IS NULL AND priority = $2 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED`;

/** $1 project, $2 ranges, $3 count, $4 priority, $5 lease id, $6 node, $7 expiry, $8 now: a media item, leased at once. */
export const INSERT_MEDIA_ITEM = `INSERT INTO items (project, ranges, id_count, kind, priority, state, lease_id, node_id, lease_expires_at, progress_at, attempts)
  VALUES ($1, $2, $3, 'media', $4, 'claimed', $5, $6, $7, $8, 1) RETURNING id`;

/**
 * $1 project, $2 highest priority, $3 node, $4 lowest priority: when the next lease expires, whether
 * post items are queued, and the oldest take-back among the queued items barred for the node.
 */
export const NOTHING_QUEUED = `SELECT (SELECT MIN(lease_expires_at) FROM items WHERE project = $1 AND state = 'claimed' AND priority BETWEEN 0 AND $2) AS at,
  EXISTS (SELECT 1 FROM items WHERE project = $1 AND state = 'queued' AND priority = 0) AS posts,
  (SELECT MIN(stalled_at) FROM items WHERE project = $1 AND state = 'queued' AND stalled_by = $3 AND priority BETWEEN $4 AND $2) AS barred`;

const LEASE_COLUMNS = `id, node_id, state, lease_expires_at, ranges, finished, finished_count, id_count, kind, rechecks`;
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

/** Guarded ($1..$9), then $10 finished, $11 its size, $12 the new expiry, $13 media taken (progress too). */
export const HEARTBEAT = `WITH u AS (UPDATE items SET finished = $10, finished_count = $11, lease_expires_at = $12,
    progress_at = CASE WHEN $11::bigint > finished_count OR $13::boolean THEN $4 ELSE progress_at END WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`;
/** Guarded ($1..$9), then $10 done_stats. */
export const DONE = `WITH u AS (UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = $4, done_stats = $10
  WHERE ${LEASE_GUARD} RETURNING id), ${CREDIT}`;
/**
 * DONE, and in the same statement (only if the done applied) a recheck item (issue 21 §1): $11 its
 * ranges, $12 their size, $13 not before, $14 its recheck attempt.
 */
export const DONE_RECHECK = `WITH u AS (UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = $4, done_stats = $10
  WHERE ${LEASE_GUARD} RETURNING id),
r AS (INSERT INTO items (project, ranges, id_count, kind, priority, not_before, rechecks) SELECT $9, $11, $12::bigint, 'recheck', 0, $13::bigint, $14::int FROM u), ${CREDIT}`;
/** $1 project, $2 first IDs, $3 last IDs, $4 accepted at, $5 forget up to: a follow's accepted ranges (issue 21 §1), older rows dropped in the same statement. */
export const NOTE_ACCEPTED = `WITH d AS (DELETE FROM follow_accepted WHERE project = $1 AND accepted_at <= $5::bigint)
  INSERT INTO follow_accepted (project, first_id, last_id, accepted_at) SELECT $1, s, e, $4::bigint FROM unnest($2::bigint[], $3::bigint[]) AS t (s, e)`;
/** $1 project, $2 since. */
export const ACCEPTED_SINCE = `SELECT first_id, last_id, accepted_at FROM follow_accepted WHERE project = $1 AND accepted_at > $2::bigint ORDER BY accepted_at, first_id`;
/** $1 project, $2 ranges, $3 their size, $4 not before, $5 its recheck attempt: a fail's recheck item (issue 21 §1), in the release's transaction. */
export const INSERT_RECHECK = `INSERT INTO items (project, ranges, id_count, kind, priority, not_before, rechecks) VALUES ($1, $2, $3::bigint, 'recheck', 0, $4::bigint, $5::int)`;
/** $1 project, $2 ranges, $3 sizes: recheck items queued at once (`tracker seed --recheck missing`). */
export const INSERT_RECHECKS = `INSERT INTO items (project, ranges, id_count, kind, priority, rechecks) SELECT $1, r, c, 'recheck', 0, 0 FROM unnest($2::text[], $3::bigint[]) AS t (r, c)`;
/** Guarded ($1..$9), then $10 finished, $11 its size, $12 the error (fail) or null. */
export const RELEASE = `WITH u AS (UPDATE items SET state = CASE WHEN $11::bigint >= id_count THEN 'done' ELSE 'queued' END,
    finished = $10, finished_count = $11::bigint, lease_id = NULL, node_id = NULL, lease_expires_at = NULL, last_error = COALESCE($12, last_error),
    failures = failures + CASE WHEN $12::text IS NULL THEN 0 ELSE 1 END
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
  claimableIdItems: `SELECT COUNT(*)::bigint AS n FROM items WHERE project = $1 AND state = 'queued' AND kind IN ('posts', 'recheck') AND (not_before IS NULL OR not_before <= $2)`,
  // Per state and kind: media items count as items, only post items' units as IDs (stats.ts).
  itemCounts: `SELECT state, kind, COUNT(*) AS items, COALESCE(SUM(id_count), 0)::bigint AS ids, COALESCE(SUM(finished_count), 0)::bigint AS finished
    FROM items WHERE project = $1 GROUP BY state, kind`,
  nickTotals: `SELECT nick, SUM(items_done)::bigint AS items, SUM(ids_done)::bigint AS ids, SUM(bytes_done)::bigint AS bytes,
      SUM(refused_media)::bigint AS refused_media, SUM(refused_claims)::bigint AS refused_claims, SUM(stalled_leases)::bigint AS stalled_leases
    FROM nodes WHERE project = $1 GROUP BY nick`,
  failedMedia: `SELECT COUNT(*)::bigint AS n FROM media_urls WHERE project = $1 AND failed_at IS NOT NULL`,
  nickRates: `SELECT n.nick, SUM(e.ids)::bigint AS ids FROM events e JOIN nodes n ON n.id = e.node_id WHERE e.project = $1 AND e.at >= $2 GROUP BY n.nick`,
  activeNodes: `SELECT COUNT(DISTINCT node_id) AS n FROM items WHERE project = $1 AND state = 'claimed' AND lease_expires_at >= $2`,
  workItems: `SELECT priority, SUM(id_count)::bigint AS units, SUM(finished_count)::bigint AS finished,
      SUM(CASE WHEN state = 'done' THEN finished_count ELSE 0 END)::bigint AS sample_units,
      SUM(CASE WHEN state = 'done' THEN COALESCE((done_stats::jsonb->>'bytes')::bigint, 0) ELSE 0 END)::bigint AS sample_bytes
    FROM items WHERE project = $1 GROUP BY priority`,
  workPending: `SELECT priority, COUNT(*)::bigint AS n FROM media_urls WHERE project = $1 AND item_id IS NULL GROUP BY priority`,
  windowBytes: `SELECT COALESCE(SUM(bytes), 0)::bigint AS n, COALESCE(SUM(ids), 0)::bigint AS units, COUNT(*)::bigint AS events, MIN(at) AS first_at, MAX(at) AS last_at
    FROM events WHERE project = $1 AND at >= $2`,
  mediaCounts: `SELECT COUNT(*)::bigint AS urls, COUNT(*) FILTER (WHERE m.item_id IS NULL)::bigint AS pending,
      COUNT(*) FILTER (WHERE i.state = 'done' AND m.failed_at IS NULL)::bigint AS done, COUNT(*) FILTER (WHERE m.failed_at IS NOT NULL)::bigint AS failed
    FROM media_urls m LEFT JOIN items i ON i.id = m.item_id WHERE m.project = $1`,
} as const;

/** $1 project, $2 nick, $3 reason, $4 now: bans the nick and returns its leased items to the queue. */
export const BAN = `WITH b AS (INSERT INTO bans (project, nick, reason, created_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (project, nick) DO UPDATE SET reason = EXCLUDED.reason RETURNING 1),
  r AS (UPDATE items SET state = 'queued', lease_id = NULL, node_id = NULL, lease_expires_at = NULL
    WHERE project = $1 AND state = 'claimed' AND node_id IN (SELECT id FROM nodes WHERE project = $1 AND nick = $2) RETURNING 1)
  SELECT (SELECT count(*) FROM r)::int AS n, (SELECT count(*) FROM b)::int AS b`;

/** $1 token hash, $2 project: the node and whether its nick is banned. */
export const AUTH = `SELECT n.id, n.nick, b.nick IS NOT NULL AS banned FROM nodes n
  LEFT JOIN bans b ON b.project = n.project AND b.nick = n.nick WHERE n.token_hash = $1 AND n.project = $2`;

/** $1 ms, $2 project, $3 since: leases live at `since` get `ms` more. */
export const EXTEND_LEASES = `WITH e AS (UPDATE items SET lease_expires_at = lease_expires_at + $1 WHERE project = $2 AND state = 'claimed' AND lease_expires_at >= $3 RETURNING 1)
  SELECT COUNT(*)::int AS n FROM e`;
