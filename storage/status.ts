import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../config/errors.js';
import { missingRanges } from './coverage.js';
import { extractionNotes, formatExtractionNotes } from './extraction-notes.js';
import { lockHolder } from './dir-lock.js';
import { readManifest } from './shard-manifest.js';
import { openForReading } from './sqlite-read.js';

/**
 * `lifeboat status DIR`: what a shard or merged directory holds and what is left to do —
 * counts by status, WARC files and sizes, provenance (the shard's manifest, or the merge's
 * inputs), failed IDs as ranges, media still queued or failed. Read-only; printable or JSON.
 */
export interface DirStatus {
  dir: string;
  kind: 'shard' | 'merged';
  /** The live process writing this directory now (dir-lock.ts), if any: the numbers are moving. */
  running?: { pid: number; command: string; startedAt: string; host: string };
  ids: Record<string, number>;
  /** Final IDs archived with extraction cut short or failed, by note (storage/extraction-notes.ts). */
  extractionNotes?: ReturnType<typeof extractionNotes>;
  warcs: { name: string; bytes: number; open: boolean }[];
  warcBytes: number;
  provenance:
    | { kind: 'shard'; profile?: string; node?: string; software?: string; ranges?: string; updatedAt?: string }
    | { kind: 'merged'; inputs: { path: string; kind: string; node: string | null; mergedAt: string; recordsKept: number; defects: number }[] };
  left: {
    /** IDs that are not final (failed, or in a requested range with no status at all). */
    idsToRetry: number;
    /** The first ranges of those IDs, in decimal. */
    firstRanges: string[];
    mediaQueued: number;
    mediaFailed: number;
    openWarcs: number;
    /** Why IDs failed (ids.last_error), the most common first; empty for a merged directory. */
    failureReasons: FailureReason[];
  };
}

export interface FailureReason {
  reason: string;
  count: number;
}

/** A last_error with the per-ID part (the URL's path) cut, so that one cause counts once. */
export function reasonOf(lastError: string | null): string {
  if (!lastError) return 'no reason recorded';
  return lastError.replace(/(https?:\/\/[^/\s]+)\/\S*?(?=:?(?:\s|$))/g, '$1/…');
}

/** The most common reasons why IDs of a shard failed, from an open shard database. */
export function failureReasons(db: ReturnType<typeof openForReading>, limit = 5): FailureReason[] {
  const byReason = new Map<string, number>();
  for (const r of db.prepare<[], { e: string | null; n: number }>(`SELECT last_error AS e, COUNT(*) AS n FROM ids WHERE status = 'failed' GROUP BY last_error`).iterate()) {
    const reason = reasonOf(r.e);
    byReason.set(reason, (byReason.get(reason) ?? 0) + r.n);
  }
  return [...byReason].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)).slice(0, limit);
}

/** `failureReasons` of the shard in `dir` (read-only); empty when it has no database yet. */
export function shardFailureReasons(dir: string, limit = 5): FailureReason[] {
  let db: ReturnType<typeof openForReading>;
  try {
    db = openForReading(join(dir, 'shard.sqlite'));
  } catch {
    return [];
  }
  try {
    return failureReasons(db, limit);
  } finally {
    db.close();
  }
}

/** The lines that list failure reasons: `  COUNT × REASON`. */
export function formatFailureReasons(reasons: readonly FailureReason[]): string[] {
  const width = String(reasons[0]?.count ?? 0).length;
  return reasons.map((r) => `  ${String(r.count).padStart(width)} × ${r.reason}`);
}

function* rangesOf(ids: Iterable<{ start: number; end: number }>): Generator<string> {
  for (const r of ids) yield r.start === r.end ? String(r.start) : `${r.start}-${r.end}`;
}

export async function shardStatus(dir: string): Promise<DirStatus> {
  let kind: 'shard' | 'merged';
  let dbPath: string;
  if (await stat(join(dir, 'merged.sqlite')).then(() => true, () => false)) {
    kind = 'merged';
    dbPath = join(dir, 'merged.sqlite');
  } else if (await stat(join(dir, 'shard.sqlite')).then(() => true, () => false)) {
    kind = 'shard';
    dbPath = join(dir, 'shard.sqlite');
  } else throw new InputError(`${dir} is neither a shard nor a merged directory (no shard.sqlite or merged.sqlite)`, { code: 'E_STATUS_INPUT' });

  const warcs: DirStatus['warcs'] = [];
  for (const name of (await readdir(join(dir, 'warcs')).catch(() => [] as string[])).filter((n) => /\.warc(\.gz)?(\.open)?$/.test(n)).sort()) {
    warcs.push({ name, bytes: (await stat(join(dir, 'warcs', name))).size, open: name.endsWith('.open') });
  }
  const db = openForReading(dbPath);
  try {
    const ids: Record<string, number> = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 };
    for (const r of db.prepare<[], { status: string; n: number }>('SELECT status, COUNT(*) AS n FROM ids GROUP BY status').iterate()) ids[r.status] = r.n;
    // Merged databases keep no per-ID error text: notes are a shard's.
    const notes = kind === 'shard' ? extractionNotes(db) : { total: 0, notes: [] };
    const firstRanges: string[] = [];
    let idsToRetry = 0;
    let mediaQueued = 0;
    let mediaFailed = 0;
    let provenance: DirStatus['provenance'];
    let reasons: FailureReason[] = [];
    if (kind === 'merged') {
      for (const r of missingRanges(db)) {
        idsToRetry += r.end - r.start + 1;
        if (firstRanges.length < 20) firstRanges.push(...rangesOf([r]));
      }
      for (const r of db
        .prepare<[], { state: string; n: number }>(
          `SELECT state, COUNT(DISTINCT url) AS n FROM media_left m
           WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.url = m.url AND r.type IN ('response', 'revisit')) GROUP BY state`,
        )
        .iterate()) {
        if (r.state === 'queued') mediaQueued = r.n;
        else mediaFailed = r.n;
      }
      provenance = {
        kind: 'merged',
        inputs: db
          .prepare<[], { path: string; kind: string; node: string | null; mergedAt: string; recordsKept: number; defects: number }>(
            'SELECT path, kind, node, merged_at AS mergedAt, records_kept AS recordsKept, defects FROM inputs ORDER BY id',
          )
          .all(),
      };
    } else {
      idsToRetry = ids.failed ?? 0;
      reasons = failureReasons(db);
      const failed = db.prepare<[], { start: number; end: number }>(
        `SELECT MIN(id) AS start, MAX(id) AS end FROM (SELECT id, id - ROW_NUMBER() OVER (ORDER BY id) AS grp FROM ids WHERE status = 'failed')
         GROUP BY grp ORDER BY start LIMIT 20`,
      );
      firstRanges.push(...rangesOf(failed.iterate()));
      for (const r of db.prepare<[], { state: string; n: number }>('SELECT state, COUNT(*) AS n FROM urls GROUP BY state').iterate()) {
        if (r.state === 'queued') mediaQueued = r.n;
        if (r.state === 'failed') mediaFailed = r.n;
      }
      const m = await readManifest(dir).catch(() => undefined);
      provenance = { kind: 'shard', profile: m?.profile, node: m?.node, software: m?.software, ranges: Array.isArray(m?.ranges) ? m.ranges.join(',') : m?.ranges, updatedAt: m?.updated_at };
    }
    const holder = lockHolder(dir);
    return {
      dir,
      kind,
      ...(holder ? { running: { pid: holder.pid, command: holder.command, startedAt: holder.startedAt, host: holder.host } } : {}),
      ids,
      ...(notes.total > 0 ? { extractionNotes: notes } : {}),
      warcs,
      warcBytes: warcs.reduce((n, w) => n + w.bytes, 0),
      provenance,
      left: { idsToRetry, firstRanges, mediaQueued, mediaFailed, openWarcs: warcs.filter((w) => w.open).length, failureReasons: reasons },
    };
  } finally {
    db.close();
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The human-readable form of a status. */
export function formatStatus(s: DirStatus): string {
  const lines: string[] = [];
  lines.push(`${s.kind} ${s.dir}`);
  if (s.running) lines.push(`running: ${s.running.command} by process ${s.running.pid} (started ${s.running.startedAt}); these numbers are a snapshot`);
  lines.push(`ids: ${Object.entries(s.ids).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(...formatExtractionNotes(s.extractionNotes));
  lines.push(`warcs: ${s.warcs.length} files, ${mib(s.warcBytes)}${s.left.openWarcs ? ` (${s.left.openWarcs} unfinished .open)` : ''}`);
  for (const w of s.warcs) lines.push(`  ${w.name}  ${mib(w.bytes)}${w.open ? '  (open)' : ''}`);
  if (s.provenance.kind === 'shard') {
    const p = s.provenance;
    lines.push(`shard: profile ${p.profile ?? '?'}, node ${p.node ?? '?'}, ranges ${p.ranges ?? '?'}, ${p.software ?? ''}${p.updatedAt ? `, updated ${p.updatedAt}` : ''}`);
  } else {
    lines.push(`merged from ${s.provenance.inputs.length} inputs:`);
    for (const i of s.provenance.inputs) lines.push(`  ${i.path} (${i.kind}${i.node ? `, node ${i.node}` : ''}) merged ${i.mergedAt}: ${i.recordsKept} records kept, ${i.defects} defects`);
  }
  const l = s.left;
  if (s.running) lines.push(`left: not known until the ${s.running.command} ends (${l.idsToRetry} IDs failed so far)`);
  else if (l.idsToRetry === 0 && l.mediaQueued === 0 && l.mediaFailed === 0 && l.openWarcs === 0) lines.push('left: nothing');
  else {
    lines.push(`left: ${l.idsToRetry} IDs to retry${l.firstRanges.length ? ` (${l.firstRanges.join(',')}${l.idsToRetry > 0 && l.firstRanges.length >= 20 ? ',…' : ''})` : ''}; media ${l.mediaQueued} queued, ${l.mediaFailed} failed`);
  }
  if (l.failureReasons.length > 0) lines.push('failed IDs by reason:', ...formatFailureReasons(l.failureReasons));
  return `${lines.join('\n')}\n`;
}
