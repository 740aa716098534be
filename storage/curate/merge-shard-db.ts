import { FINAL_STATUSES } from '../../config/id-status.js';
import { STATUS_RANK_SQL, type MergedDb } from './merge-db.js';

/**
 * Folds one shard's database into the merged one, all in SQL (ATTACH + INSERT … SELECT), so it
 * streams however large the shard is:
 * - `captures` rows point at the kept record: the record itself, or for a dropped duplicate the
 *   copy that was kept; a capture whose record was damaged (not kept) is left out;
 * - an ID the shard calls `archived` whose primary record (its first capture) was damaged counts as `failed` here,
 *   so it lands in missing-ranges.txt and is crawled again;
 * - when inputs disagree on an ID's status the higher one wins (archived > restricted > gone >
 *   missing > failed) and the disagreement is listed in `id_conflicts`;
 * - the shard's requested ranges, extracted post fields and unfinished media URLs are kept.
 * Re-importing the same shard (a resumed crawl merged again) replaces its earlier rows.
 */
export function importShardDb(mdb: MergedDb, shardDbPath: string, inputId: number): void {
  const db = mdb.db;
  db.prepare('ATTACH DATABASE ? AS s').run(shardDbPath);
  try {
    const finals = FINAL_STATUSES.map((s) => `'${s}'`).join(', ');
    mdb.transaction(() => {
      for (const t of ['captures', 'posts', 'requested', 'media_left', 'id_conflicts']) db.prepare(`DELETE FROM ${t} WHERE input_id = ?`).run(inputId);
      db.prepare(
        `INSERT INTO captures (post_id, name, url, http_status, record_id, payload_digest, fetched_at, content_type, input_id)
         SELECT c.post_id, c.name, c.url, c.http_status, COALESCE(r.record_id, d.kept_record_id), c.payload_digest, c.fetched_at, c.content_type, ?
         FROM s.captures c
         LEFT JOIN records r ON r.record_id = c.record_id
         LEFT JOIN duplicates d ON d.record_id = c.record_id
         WHERE COALESCE(r.record_id, d.kept_record_id) IS NOT NULL`,
      ).run(inputId);
      db.exec('DROP TABLE IF EXISTS temp.shard_ids');
      db.prepare(
        `CREATE TEMP TABLE shard_ids AS
         SELECT i.id, CASE WHEN i.status = 'archived' AND NOT EXISTS (
                  SELECT 1 FROM s.captures c
                  WHERE c.rowid = (SELECT MIN(rowid) FROM s.captures WHERE post_id = i.id)
                    AND (EXISTS (SELECT 1 FROM records r WHERE r.record_id = c.record_id)
                         OR EXISTS (SELECT 1 FROM duplicates d WHERE d.record_id = c.record_id AND d.kept_record_id IS NOT NULL)))
                THEN 'failed' ELSE i.status END AS status,
                i.http_status, i.updated_at
         FROM s.ids i`,
      ).run();
      db.prepare(
        `INSERT INTO id_conflicts (id, status, input_id, other_status, other_input_id)
         SELECT s.id, s.status, ?, m.status, m.input_id FROM temp.shard_ids s JOIN ids m ON m.id = s.id
         WHERE m.status != s.status AND m.status IN (${finals}) AND s.status IN (${finals}) AND m.input_id != ?`,
      ).run(inputId, inputId);
      db.prepare(
        `INSERT INTO ids (id, status, http_status, input_id, updated_at)
         SELECT id, status, http_status, ?, updated_at FROM temp.shard_ids WHERE true
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, http_status = excluded.http_status, input_id = excluded.input_id, updated_at = excluded.updated_at
         WHERE ${STATUS_RANK_SQL('excluded.status')} > ${STATUS_RANK_SQL('ids.status')} OR ids.input_id = excluded.input_id`,
      ).run(inputId);
      db.exec('DROP TABLE temp.shard_ids');
      db.prepare('INSERT OR REPLACE INTO posts (id, input_id, fields) SELECT id, ?, fields FROM s.posts').run(inputId);
      const ranges = db.prepare<[], { value: string }>(`SELECT value FROM s.meta WHERE key = 'ranges'`).get();
      if (ranges) {
        const put = db.prepare('INSERT INTO requested (input_id, start, end) VALUES (?, ?, ?)');
        for (const [start, end] of JSON.parse(ranges.value) as [number, number][]) put.run(inputId, start, end);
      }
      // A failed URL keeps why (issue 21 §2): the shard's last error, else its last HTTP status.
      db.prepare(
        `INSERT OR IGNORE INTO media_left (url, state, input_id, reason)
         SELECT url, state, ?, CASE WHEN state = 'failed' THEN COALESCE(last_error, 'HTTP ' || http_status) END FROM s.urls WHERE state IN ('queued', 'failed')`,
      ).run(inputId);
    });
  } finally {
    db.exec('DETACH DATABASE s');
  }
}
