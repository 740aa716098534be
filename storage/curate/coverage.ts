import { writeFile, rename } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { FINAL_STATUSES, ID_STATUSES } from '../../config/id-status.js';
import { versionConflicts, type VersionReport } from './version-conflicts.js';

/**
 * The coverage report of a merged directory: `coverage.json` (per-status counts, what each input
 * contributed, conflicts between inputs, different versions of the same URL, same content in
 * different encodings) and
 * `missing-ranges.txt` — every ID inside some input's requested ranges that has no final status,
 * as `START-END` (or `ID`) lines that `parseRanges` reads and a tracker can re-seed. Computed
 * from merged.sqlite alone; the missing ranges are a streaming difference of two sorted range
 * lists (requested, final), so a billion IDs cost nothing.
 *
 * Media across the project (issue 13): `missing-media.txt` lists, one per line, every media URL
 * some input left queued or failed (its post item reported it, or a media item could not get it)
 * that no input archived (no response or revisit record for it) — what `tracker seed
 * --media-from-file` queues again, as missing-ranges.txt is for IDs.
 */
export interface CoverageReport {
  generated_at: string;
  statuses: Record<string, number>;
  requested_ids: number;
  final_ids_in_requested: number;
  missing_ids: number;
  missing_ranges: number;
  /** Media URLs: `archived` fetched by some input (as media), `missing` queued somewhere and archived nowhere (missing-media.txt). */
  media: { archived: number; missing: number };
  records: Record<string, number>;
  duplicates_dropped: number;
  inputs: {
    id: number;
    path: string;
    kind: string;
    profile: string | null;
    node: string | null;
    records_read: number;
    records_kept: number;
    duplicates: number;
    defects: number;
    ids_contributed: number;
  }[];
  conflicts: {
    statuses: { count: number; first: { id: number; status: string; input: number; other_status: string; other_input: number }[] };
    /** One URL archived with different payloads (version-conflicts.ts). */
    versions: VersionReport['versions'];
    /** One URL whose payloads differ only in transfer encoding: both kept, not a conflict. */
    same_content: VersionReport['same_content'];
  };
  defects: { count: number; first: { file: string; offset: number | null; what: string }[] };
}

interface Range {
  start: number;
  end: number;
}

function normalise(ranges: Range[]): Range[] {
  const sorted = ranges.filter((r) => r.end >= r.start).sort((a, b) => a.start - b.start);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

/** `requested` minus the streamed, sorted, disjoint `cut` ranges. */
export function* subtractRanges(requested: Range[], cut: Iterable<Range>): Generator<Range> {
  const it = cut[Symbol.iterator]();
  let c = it.next();
  for (const r of requested) {
    let start = r.start;
    while (!c.done && c.value.end < start) c = it.next();
    while (!c.done && c.value.start <= r.end) {
      if (c.value.start > start) yield { start, end: c.value.start - 1 };
      start = Math.max(start, c.value.end + 1);
      if (c.value.end > r.end) break;
      c = it.next();
    }
    if (start <= r.end) yield { start, end: r.end };
  }
}

function* finalRanges(db: Database.Database): Generator<Range> {
  const finals = FINAL_STATUSES.map((s) => `'${s}'`).join(', ');
  yield* db
    .prepare<[], Range>(
      `SELECT MIN(id) AS start, MAX(id) AS end FROM (
         SELECT id, id - ROW_NUMBER() OVER (ORDER BY id) AS grp FROM ids WHERE status IN (${finals}))
       GROUP BY grp ORDER BY start`,
    )
    .iterate();
}

/** IDs inside some input's requested ranges with no final status, as sorted ranges (streamed). */
export function* missingRanges(db: Database.Database): Generator<Range> {
  const requested = normalise(db.prepare<[], Range>('SELECT start, end FROM requested').all());
  yield* subtractRanges(requested, finalRanges(db));
}

export async function writeCoverage(db: Database.Database, dir: string, options: { formatId?: (id: number) => string; listLimit?: number } = {}): Promise<CoverageReport> {
  const fmt = options.formatId ?? ((n: number) => String(n));
  const limit = options.listLimit ?? 1000;
  const requested = normalise(db.prepare<[], Range>('SELECT start, end FROM requested').all());
  const requestedIds = requested.reduce((n, r) => n + r.end - r.start + 1, 0);

  const missingPath = join(dir, 'missing-ranges.txt');
  const out = createWriteStream(`${missingPath}.tmp`);
  let missingIds = 0;
  let missingRangeCount = 0;
  for (const r of missingRanges(db)) {
    missingIds += r.end - r.start + 1;
    missingRangeCount++;
    if (!out.write(r.start === r.end ? `${fmt(r.start)}\n` : `${fmt(r.start)}-${fmt(r.end)}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  await rename(`${missingPath}.tmp`, missingPath);

  const missingMedia = await writeMissingMedia(db, dir);

  const statuses: Record<string, number> = Object.fromEntries(ID_STATUSES.map((s) => [s, 0]));
  for (const r of db.prepare<[], { status: string; n: number }>('SELECT status, COUNT(*) AS n FROM ids GROUP BY status').iterate()) statuses[r.status] = r.n;
  const records: Record<string, number> = {};
  for (const r of db.prepare<[], { type: string; n: number }>('SELECT type, COUNT(*) AS n FROM records GROUP BY type').iterate()) records[r.type] = r.n;

  const found = await versionConflicts(db, dir, limit);

  const report: CoverageReport = {
    generated_at: new Date().toISOString(),
    statuses,
    requested_ids: requestedIds,
    final_ids_in_requested: requestedIds - missingIds,
    missing_ids: missingIds,
    missing_ranges: missingRangeCount,
    media: {
      // A 5xx or 429 answer is recorded, not archived (as in missingMedia).
      archived: db.prepare<[], { n: number }>(`SELECT COUNT(DISTINCT url) AS n FROM captures WHERE name = 'media' AND COALESCE(http_status, 200) < 500 AND COALESCE(http_status, 200) <> 429`).get()!.n,
      missing: missingMedia,
    },
    records,
    duplicates_dropped: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM duplicates').get()!.n,
    inputs: db
      .prepare<[], CoverageReport['inputs'][number]>(
        `SELECT i.id, i.path, i.kind, i.profile, i.node, i.records_read, i.records_kept, i.duplicates, i.defects,
                (SELECT COUNT(*) FROM ids WHERE ids.input_id = i.id) AS ids_contributed
         FROM inputs i ORDER BY i.id`,
      )
      .all(),
    conflicts: {
      statuses: {
        count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM id_conflicts').get()!.n,
        first: db
          .prepare<[number], CoverageReport['conflicts']['statuses']['first'][number]>(
            'SELECT id, status, input_id AS input, other_status, other_input_id AS other_input FROM id_conflicts ORDER BY id LIMIT ?',
          )
          .all(limit),
      },
      versions: found.versions,
      same_content: found.same_content,
    },
    defects: {
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM defects').get()!.n,
      first: db.prepare<[number], { file: string; offset: number | null; what: string }>('SELECT file, offset, what FROM defects ORDER BY rowid LIMIT ?').all(limit),
    },
  };
  await writeFile(join(dir, 'coverage.json.tmp'), `${JSON.stringify(report, null, 2)}\n`);
  await rename(join(dir, 'coverage.json.tmp'), join(dir, 'coverage.json'));
  return report;
}

/**
 * Media URLs left queued or failed by some input and archived by none, sorted (streamed), with
 * why one failed (an input's last error for it; none when it was only left queued). A URL counts
 * in the form it is fetched in: without its fragment (the tracker hands it out so).
 */
export function* missingMedia(db: Database.Database): Generator<{ url: string; reason: string | null }> {
  // A 5xx or 429 answer was recorded, not archived: the URL is still missing.
  const archived = db.prepare<[string], number>(`SELECT 1 FROM records WHERE url = ? AND type IN ('response', 'revisit') AND COALESCE(status, 200) < 500 AND COALESCE(status, 200) <> 429 LIMIT 1`).pluck();
  let last: { url: string; reason: string | null } | undefined;
  const rows = db.prepare<[], { url: string; reason: string | null }>('SELECT url, MAX(reason) AS reason FROM media_left GROUP BY url ORDER BY url').iterate();
  for (const row of rows as IterableIterator<{ url: string; reason: string | null }>) {
    const url = row.url.replace(/#.*$/s, '');
    if (url === last?.url) {
      last.reason ??= row.reason;
      continue;
    }
    if (last && archived.get(last.url) === undefined) yield last;
    last = { url, reason: row.reason };
  }
  if (last && archived.get(last.url) === undefined) yield last;
}

/**
 * Writes DIR/missing-media.txt (one URL a line, a failed one followed by `  # failed: REASON`,
 * a comment `tracker seed --media-from-file` skips); returns how many URLs it lists.
 */
async function writeMissingMedia(db: Database.Database, dir: string): Promise<number> {
  const path = join(dir, 'missing-media.txt');
  const out = createWriteStream(`${path}.tmp`);
  let n = 0;
  for (const { url, reason } of missingMedia(db)) {
    n++;
    const why = reason ? `  # failed: ${reason.replace(/[\r\n]+/g, ' ').slice(0, 300)}` : '';
    if (!out.write(`${url}${why}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  await rename(`${path}.tmp`, path);
  return n;
}
