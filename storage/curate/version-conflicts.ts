import type Database from 'better-sqlite3';
import { decodedDigest } from '../warc/decoded-payload.js';
import { warcPath } from '../shard/layout.js';

/**
 * Version conflicts of a merged directory (issue 15 §1, §6), for coverage.json. A conflict is one
 * URL archived with different payloads — a post edited between two captures — listed with each
 * payload digest, its date and input, and the dropped copies of it per input (`also_seen`). Grouping is by
 * URL, never by post and capture name (a post's media are different URLs, not versions).
 *
 * Same content, different encoding: when the payloads of a URL differ only in transfer (one
 * capture gzip or br, another plain; one chunked), each version's decoded digest
 * (decoded-payload.ts) is compared. If they are all equal the URL is listed under `same_content`,
 * not as a conflict. Both records are kept: each is an authentic capture with its own headers,
 * replay serves either, and dropping one would mean rewriting merged WARCs already written.
 * Decoded digests are cached in merged.sqlite (`decoded`), so an incremental merge decodes only
 * new candidates; a version that cannot be decoded (zstd, damaged) keeps the URL a conflict.
 */
export interface Version {
  digest: string;
  date: string | null;
  input: number;
  encoding: string | null;
  decoded_digest: string | null;
  /** Dropped copies of this payload, per input: how many and the first date. */
  also_seen: { input: number; date: string | null; copies: number }[];
}

export interface UrlVersions {
  url: string;
  post_id: number | null;
  capture: string | null;
  versions: Version[];
}

export interface VersionReport {
  versions: { count: number; first: UrlVersions[] };
  same_content: { count: number; first: UrlVersions[] };
}

const OK = `type IN ('response', 'resource') AND (status IS NULL OR status BETWEEN 200 AND 299) AND payload_digest IS NOT NULL`;
const PAGE = 1000;

export async function versionConflicts(db: Database.Database, dir: string, limit: number): Promise<VersionReport> {
  db.exec('CREATE INDEX IF NOT EXISTS duplicates_key ON duplicates(url, payload_digest)');
  const candidates = db.prepare<[string, number], { url: string }>(
    `SELECT url FROM records WHERE ${OK} AND url > ? GROUP BY url HAVING COUNT(DISTINCT payload_digest) > 1 ORDER BY url LIMIT ?`,
  );
  const rows = db.prepare<[string], { record_id: string; payload_digest: string; date: string | null; input_id: number; encoding: string | null; warc: string; offset: number; length: number }>(
    `SELECT record_id, payload_digest, date, input_id, encoding, warc, offset, length FROM records WHERE url = ? AND ${OK} ORDER BY date, record_id`,
  );
  const seen = db.prepare<[string, string], { input: number; date: string | null; copies: number }>(
    `SELECT input_id AS input, MIN(date) AS date, COUNT(*) AS copies FROM duplicates WHERE url = ? AND payload_digest = ? GROUP BY input_id ORDER BY input_id`,
  );
  const capture = db.prepare<[string], { post_id: number | null; name: string | null }>('SELECT post_id, name FROM captures WHERE url = ? LIMIT 1');
  const cached = db.prepare<[string], { digest: string | null }>('SELECT digest FROM decoded WHERE record_id = ?');
  const cache = db.prepare('INSERT OR REPLACE INTO decoded (record_id, digest) VALUES (?, ?)');
  const report: VersionReport = { versions: { count: 0, first: [] }, same_content: { count: 0, first: [] } };
  let after = '';
  for (;;) {
    const page = candidates.all(after, PAGE);
    if (page.length === 0) break;
    after = page[page.length - 1]!.url;
    for (const { url } of page) {
      const versions = new Map<string, Version>();
      let decodable = true;
      const all = rows.all(url);
      const anyEncoded = all.some((r) => r.encoding !== null);
      for (const r of all) {
        if (versions.has(r.payload_digest)) continue;
        let decoded: string | null = null;
        if (anyEncoded) {
          const hit = cached.get(r.record_id);
          if (hit) decoded = hit.digest;
          else {
            decoded = (await decodedDigest(warcPath(dir, r.warc), r.offset, r.length)) ?? null;
            cache.run(r.record_id, decoded);
          }
        } else decoded = r.payload_digest; // no encoding anywhere: the payload is what the user saw
        if (decoded === null) decodable = false;
        versions.set(r.payload_digest, { digest: r.payload_digest, date: r.date, input: r.input_id, encoding: r.encoding, decoded_digest: decoded, also_seen: seen.all(url, r.payload_digest) });
      }
      const list = [...versions.values()];
      const same = decodable && new Set(list.map((v) => v.decoded_digest)).size === 1;
      const bucket = same ? report.same_content : report.versions;
      bucket.count++;
      if (bucket.first.length < limit) {
        const c = capture.get(url);
        bucket.first.push({ url, post_id: c?.post_id ?? null, capture: c?.name ?? null, versions: list });
      }
    }
  }
  return report;
}
