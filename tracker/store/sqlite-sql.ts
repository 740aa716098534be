import type Database from 'better-sqlite3';
import { HISTORY_BUCKET_MS } from './stats.js';

/** Queued items a claim may take (project, lo, hi, now); each statement adds its node filter and order. */
const QUEUED = `SELECT id, ranges, finished, kind, priority, attempts, failures FROM items WHERE project = ? AND state = 'queued' AND priority BETWEEN ? AND ? AND (not_before IS NULL OR not_before <= ?)`;
/** In the expiry: a lease still running (so taken for no progress) marks the item with its holder; one that ran out leaves the mark. */
const STALL_MARK = `stalled_by = CASE WHEN lease_expires_at >= @now THEN node_id ELSE stalled_by END, stalled_at = CASE WHEN lease_expires_at >= @now THEN @now ELSE stalled_at END`;

/**
 * The SQLite store's statements by name (sqlite-store.ts prepares each once, in `init()`); the
 * rules they serve live in rules.ts.
 */
export const SQL = {
  heldRanges: `SELECT ranges FROM items WHERE project = ? AND kind = 'posts' ORDER BY id`,
  projects: `SELECT project FROM items UNION SELECT project FROM nodes UNION SELECT project FROM settings ORDER BY 1`,
  insertItem: `INSERT INTO items (project, ranges, id_count) VALUES (?, ?, ?)`,
  insertNode: `INSERT INTO nodes (project, nick, token_hash, created_at) VALUES (?, ?, ?, ?)`,
  isBanned: `SELECT 1 FROM bans WHERE project = ? AND nick = ?`,
  nickOwner: `SELECT id, token_hash FROM nodes WHERE project = ? AND nick = ? ORDER BY id LIMIT 1`,
  tokenUsed: `SELECT 1 FROM nodes WHERE project = ? AND token_hash = ? LIMIT 1`,
  auth: `SELECT n.id, n.nick, b.nick IS NOT NULL AS banned FROM nodes n LEFT JOIN bans b ON b.project = n.project AND b.nick = n.nick WHERE n.token_hash = ? AND n.project = ?`,
  // Overdue: the lease ran out, or its holder reported no progress since @stallBefore (issue 21 §3).
  countStalled: `UPDATE nodes SET stalled_leases = stalled_leases + (SELECT COUNT(*) FROM items i WHERE i.node_id = nodes.id AND i.project = @project
      AND i.state = 'claimed' AND i.lease_expires_at >= @now AND i.progress_at < @stallBefore)
    WHERE id IN (SELECT node_id FROM items WHERE project = @project AND state = 'claimed' AND lease_expires_at >= @now AND progress_at < @stallBefore)`,
  attemptExpired: `UPDATE media_urls SET attempts = attempts + 1, last_error = @reason
    WHERE failed_at IS NULL AND item_id IN (SELECT id FROM items WHERE project = @project AND kind = 'media' AND state = 'claimed' AND (lease_expires_at < @now OR progress_at < @stallBefore) AND finished_count < id_count)`,
  finishExpired: `UPDATE items SET state = 'done', ${STALL_MARK}, lease_id = NULL, node_id = NULL, lease_expires_at = NULL WHERE project = @project AND state = 'claimed' AND (lease_expires_at < @now OR progress_at < @stallBefore) AND finished_count >= id_count`,
  expire: `UPDATE items SET state = 'queued', ${STALL_MARK}, lease_id = NULL, node_id = NULL, lease_expires_at = NULL WHERE project = @project AND state = 'claimed' AND (lease_expires_at < @now OR progress_at < @stallBefore)`,
  liveLeases: `SELECT COUNT(*) AS n, MIN(lease_expires_at) AS at FROM items WHERE project = ? AND state = 'claimed' AND node_id = ?`,
  refuseClaim: `UPDATE nodes SET refused_claims = refused_claims + 1 WHERE id = ?`,
  givenUp: `SELECT seq, last_error FROM media_urls WHERE item_id = ? AND failed_at IS NULL AND attempts >= ?`,
  failUrl: `UPDATE media_urls SET failed_at = ? WHERE seq = ?`,
  giveUpProgress: `UPDATE items SET finished = ?, finished_count = ? WHERE id = ?`,
  finishGivenUp: `UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = ?, lease_id = NULL, node_id = NULL, lease_expires_at = NULL WHERE id = ?`,
  attemptUrl: `UPDATE media_urls SET attempts = attempts + 1, last_error = ? WHERE seq = ? AND item_id = ?`,
  mediaBudget: `SELECT i.media_reported, i.id_count, n.media_window_at, n.media_window_count FROM items i, nodes n WHERE i.id = ? AND n.id = ?`,
  mediaTaken: `UPDATE items SET media_reported = media_reported + ? WHERE id = ?`,
  nodeMedia: `UPDATE nodes SET refused_media = refused_media + ?, media_window_at = ?, media_window_count = ? WHERE id = ?`,
  mediaKnown: `SELECT 1 FROM media_urls WHERE url_hash = ?`,
  refuseMedia: `UPDATE nodes SET refused_media = refused_media + ? WHERE id = ?`,
  // An item given back by `fail` goes behind the others of its kind. The last: project, lo, hi, now, node (whose stall-marked items are skipped).
  nextQueued: `${QUEUED} AND (stalled_by IS NULL OR stalled_by <> ?) ORDER BY priority, failures, id LIMIT 1`,
  nextQueuedNewest: `${QUEUED} AND (stalled_by IS NULL OR stalled_by <> ?) ORDER BY priority, failures, id DESC LIMIT 1`,
  // Nothing else for the node: an item it stalled on, once the bar lifted (stalled_at <= the last parameter).
  ownStalled: `${QUEUED} AND stalled_by = ? AND stalled_at <= ? ORDER BY priority, failures, id LIMIT 1`,
  ownStalledNewest: `${QUEUED} AND stalled_by = ? AND stalled_at <= ? ORDER BY priority, failures, id DESC LIMIT 1`,
  // project, node, lo, hi: the oldest take-back among the queued items barred for the node.
  barredSince: `SELECT MIN(stalled_at) AS at FROM items WHERE project = ? AND state = 'queued' AND stalled_by = ? AND priority BETWEEN ? AND ?`,
  forgetAccepted: `DELETE FROM follow_accepted WHERE project = ? AND accepted_at <= ?`,
  noteAccepted: `INSERT INTO follow_accepted (project, first_id, last_id, accepted_at) VALUES (?, ?, ?, ?)`,
  acceptedSince: `SELECT first_id, last_id, accepted_at FROM follow_accepted WHERE project = ? AND accepted_at > ? ORDER BY accepted_at, first_id`,
  insertRecheck: `INSERT INTO items (project, ranges, id_count, kind, priority, not_before, rechecks) VALUES (?, ?, ?, 'recheck', 0, ?, ?)`,
  claimableIdItems: `SELECT COUNT(*) AS n FROM items WHERE project = ? AND state = 'queued' AND kind IN ('posts', 'recheck') AND (not_before IS NULL OR not_before <= ?)`,
  queuedPosts: `SELECT 1 FROM items WHERE project = ? AND state = 'queued' AND priority = 0 LIMIT 1`,
  pendingMin: `SELECT priority FROM media_urls WHERE project = ? AND item_id IS NULL ORDER BY priority, seq LIMIT 1`,
  pendingTake: `SELECT seq FROM media_urls WHERE project = ? AND item_id IS NULL AND priority = ? ORDER BY seq LIMIT ?`,
  insertMediaItem: `INSERT INTO items (project, ranges, id_count, kind, priority) VALUES (?, ?, ?, 'media', ?)`,
  assignSeq: `UPDATE media_urls SET item_id = ? WHERE seq = ?`,
  insertMedia: `INSERT INTO media_urls (project, url_hash, url, priority) VALUES (?, ?, ?, ?) ON CONFLICT (url_hash) DO NOTHING`,
  requeueMedia: `UPDATE media_urls SET item_id = NULL, attempts = 0, failed_at = NULL WHERE url_hash = ? AND item_id IN (SELECT id FROM items WHERE state = 'done')`,
  mediaCounts: `SELECT COUNT(*) AS urls, COALESCE(SUM(m.item_id IS NULL), 0) AS pending, COALESCE(SUM(i.state = 'done' AND m.failed_at IS NULL), 0) AS done, COALESCE(SUM(m.failed_at IS NOT NULL), 0) AS failed
    FROM media_urls m LEFT JOIN items i ON i.id = m.item_id WHERE m.project = ?`,
  lease: `UPDATE items SET state = 'claimed', lease_id = ?, node_id = ?, lease_expires_at = ?, progress_at = ?, attempts = attempts + 1 WHERE id = ?`,
  extendLeases: `UPDATE items SET lease_expires_at = lease_expires_at + ? WHERE project = ? AND state = 'claimed' AND lease_expires_at >= ?`,
  earliestExpiry: `SELECT MIN(lease_expires_at) AS at FROM items WHERE project = ? AND state = 'claimed' AND priority BETWEEN ? AND ?`,
  byLease: `SELECT id, node_id, state, lease_expires_at, ranges, finished, finished_count, id_count, kind, rechecks FROM items WHERE lease_id = ? AND project = ?`,
  progress: `UPDATE items SET finished = ?, finished_count = ?, lease_expires_at = ?, progress_at = CASE WHEN ? THEN ? ELSE progress_at END WHERE id = ?`,
  credit: `UPDATE nodes SET ids_done = ids_done + ?, bytes_done = MIN(bytes_done + ?, 9007199254740991), items_done = items_done + ?, last_seen_at = ? WHERE id = ?`,
  event: `INSERT INTO events (project, at, node_id, ids, bytes) VALUES (?, ?, ?, ?, ?)`,
  finish: `UPDATE items SET state = 'done', finished = ranges, finished_count = id_count, done_at = ?, done_stats = ? WHERE id = ?`,
  requeue: `UPDATE items SET state = CASE WHEN @count >= id_count THEN 'done' ELSE 'queued' END, finished = @finished, finished_count = @count, lease_id = NULL, node_id = NULL,
    lease_expires_at = NULL, last_error = COALESCE(@error, last_error), failures = failures + (@error IS NOT NULL) WHERE id = @id`,
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
  // Per state and kind: media items count as items, only post items' units as IDs (stats.ts).
  itemCounts: `SELECT state, kind, COUNT(*) AS items, COALESCE(SUM(id_count), 0) AS ids, COALESCE(SUM(finished_count), 0) AS finished FROM items WHERE project = ? GROUP BY state, kind`,
  nickTotals: `SELECT nick, SUM(items_done) AS items, SUM(ids_done) AS ids, SUM(bytes_done) AS bytes,
    SUM(refused_media) AS refused_media, SUM(refused_claims) AS refused_claims, SUM(stalled_leases) AS stalled_leases FROM nodes WHERE project = ? GROUP BY nick`,
  failedMedia: `SELECT COUNT(*) AS n FROM media_urls WHERE project = ? AND failed_at IS NOT NULL`,
  nickRates: `SELECT n.nick AS nick, SUM(e.ids) AS ids FROM events e JOIN nodes n ON n.id = e.node_id WHERE e.project = ? AND e.at >= ? GROUP BY n.nick`,
  activeNodes: `SELECT COUNT(DISTINCT node_id) AS n FROM items WHERE project = ? AND state = 'claimed' AND lease_expires_at >= ?`,
  workItems: `SELECT priority, SUM(id_count) AS units, SUM(finished_count) AS finished, SUM(CASE WHEN state = 'done' THEN finished_count ELSE 0 END) AS sample_units,
    SUM(CASE WHEN state = 'done' THEN COALESCE(json_extract(done_stats, '$.bytes'), 0) ELSE 0 END) AS sample_bytes FROM items WHERE project = ? GROUP BY priority`,
  workPending: `SELECT priority, COUNT(*) AS n FROM media_urls WHERE project = ? AND item_id IS NULL GROUP BY priority`,
  windowBytes: `SELECT COALESCE(SUM(bytes), 0) AS n, COALESCE(SUM(ids), 0) AS units, COUNT(*) AS events, MIN(at) AS first_at, MAX(at) AS last_at FROM events WHERE project = ? AND at >= ?`,
} as const;

/** A statement's name in SQL, and a statement prepared from it. */
export type SqlName = keyof typeof SQL;
export type Stmt = Database.Statement<unknown[], unknown>;
