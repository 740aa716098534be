import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { readReferencedWarcs } from '../shard/referenced-warcs.js';
import { InputError } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import { extractionNotes, formatExtractionNotes } from '../shard/extraction-notes.js';
import { lockHolder } from '../shard/dir-lock.js';
import { readManifest } from '../shard/shard-manifest.js';
import { MergedDbReader } from './merge-db.js';
import { ShardDbReader } from '../shard/shard-db-read.js';
import { mergedDbPath, shardDbPath, warcPath, warcsDir } from '../shard/layout.js';

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
  /**
   * IDs whose status is final but that miss a capture the profile asked for (its URL could not be
   * built, or it failed after its retries): the next crawl run tries them again (issue 23 §2).
   * `ids` names the first 100 (decimal); `reasons` the most common causes. Absent when there are none.
   */
  incomplete?: { total: number; ids: number[]; reasons: FailureReason[] };
  /** Final IDs archived with extraction cut short or failed, by note (storage/shard/extraction-notes.ts). */
  extractionNotes?: ReturnType<typeof extractionNotes>;
  warcs: { name: string; bytes: number; open: boolean }[];
  warcBytes: number;
  provenance:
    | { kind: 'shard'; profile?: string; node?: string; software?: string; ranges?: string; updatedAt?: string }
    | { kind: 'merged'; inputs: { path: string; kind: string; node: string | null; mergedAt: string; recordsKept: number; defects: number }[] };
  left: {
    /** Every requested ID that is not final: never attempted + to retry. */
    ids: number;
    /** Requested IDs with no status at all (the crawl was stopped before them, or never reached them). */
    neverAttempted: number;
    /** IDs attempted that failed (a next run tries them again). */
    idsToRetry: number;
    /** IDs with a status but a secondary capture missing (`incomplete` above; a next run tries them again). */
    incomplete: number;
    /** The first ranges of the IDs left (`ids`), in decimal. */
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
export function failureReasons(shard: ShardDbReader, limit = 5): FailureReason[] {
  const byReason = new Map<string, number>();
  for (const r of shard.failedErrors()) {
    const reason = reasonOf(r.lastError);
    byReason.set(reason, (byReason.get(reason) ?? 0) + r.count);
  }
  return [...byReason].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)).slice(0, limit);
}

/** `failureReasons` of the shard in `dir` (read-only); empty when it has no database yet. */
export function shardFailureReasons(dir: string, limit = 5): FailureReason[] {
  let shard: ShardDbReader;
  try {
    shard = ShardDbReader.open(shardDbPath(dir));
  } catch {
    return [];
  }
  try {
    return failureReasons(shard, limit);
  } finally {
    shard.close();
  }
}

/** Why IDs of the shard in `dir` are incomplete (`ids.incomplete`), the most common first; empty when none or no database. */
export function shardIncompleteReasons(dir: string, limit = 5): { total: number; reasons: FailureReason[] } {
  let shard: ShardDbReader;
  try {
    shard = ShardDbReader.open(shardDbPath(dir));
  } catch {
    return { total: 0, reasons: [] };
  }
  try {
    const inc = shard.incomplete(0);
    const byReason = new Map<string, number>();
    for (const r of inc.reasons) byReason.set(reasonOf(r.reason), (byReason.get(reasonOf(r.reason)) ?? 0) + r.count);
    return { total: inc.total, reasons: [...byReason].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)).slice(0, limit) };
  } finally {
    shard.close();
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

/**
 * The IDs a shard still owes: what its crawls were asked for (`meta.ranges`) minus what is final.
 * A crawl stopped after 57 of 800 IDs leaves 743, though none of them failed. A shard too old to
 * keep its ranges knows only its failed IDs.
 */
export function leftIn(db: ShardDbReader): Left & { set: RangeSet } {
  const failed = new RangeSet(db.failedRanges(Number.MAX_SAFE_INTEGER));
  const requested = db.requestedRanges();
  const set = requested === undefined ? failed : RangeSet.fromJSON(requested).subtract(new RangeSet(db.finalRanges())).union(failed);
  // Incomplete IDs (a secondary capture missing) have a status, so they are not in `set`; the next run retries them too.
  const incomplete = db.incomplete(0).total;
  return { ids: set.size + incomplete, neverAttempted: set.size - failed.size, idsToRetry: failed.size, incomplete, set };
}

/** What a shard still owes, by kind: `ids` = never attempted + to retry + incomplete. */
export interface Left {
  ids: number;
  neverAttempted: number;
  idsToRetry: number;
  incomplete: number;
}

/** `leftIn` of the shard in `dir` (read-only); undefined when it has no database yet. */
export function shardLeft(dir: string): Left | undefined {
  let shard: ShardDbReader;
  try {
    shard = ShardDbReader.open(shardDbPath(dir));
  } catch {
    return undefined;
  }
  try {
    const { ids, neverAttempted, idsToRetry, incomplete } = leftIn(shard);
    return { ids, neverAttempted, idsToRetry, incomplete };
  } finally {
    shard.close();
  }
}

export async function shardStatus(dir: string): Promise<DirStatus> {
  let kind: 'shard' | 'merged';
  let dbPath: string;
  if (await stat(mergedDbPath(dir)).then(() => true, () => false)) {
    kind = 'merged';
    dbPath = mergedDbPath(dir);
  } else if (await stat(shardDbPath(dir)).then(() => true, () => false)) {
    kind = 'shard';
    dbPath = shardDbPath(dir);
  } else if (!(await stat(dir).then(() => true, () => false))) {
    throw new InputError(`${dir}: no such file or directory`, { code: 'E_STATUS_INPUT' });
  } else throw new InputError(`${dir} is neither a shard nor a merged directory (no shard.sqlite or merged.sqlite)`, { code: 'E_STATUS_INPUT' });

  const warcs: DirStatus['warcs'] = [];
  for (const name of (await readdir(warcsDir(dir)).catch(() => [] as string[])).filter((n) => /\.warc(\.gz)?(\.open)?$/.test(n)).sort()) {
    warcs.push({ name, bytes: (await stat(warcPath(dir, name))).size, open: name.endsWith('.open') });
  }
  // An index-only merge's WARCs are the inputs' files it points into (named relative to `dir`).
  for (const w of (kind === 'merged' ? readReferencedWarcs(dir) : undefined) ?? []) warcs.push({ name: w.name, bytes: w.size, open: false });
  const db = kind === 'merged' ? MergedDbReader.open(dbPath) : ShardDbReader.open(dbPath);
  try {
    const ids: Record<string, number> = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0, ...db.idCounts() };
    const firstRanges: string[] = [];
    let idsLeft = 0;
    let idsToRetry = 0;
    let idsIncomplete = 0;
    let mediaQueued = 0;
    let mediaFailed = 0;
    let provenance: DirStatus['provenance'];
    let reasons: FailureReason[] = [];
    // Merged databases keep no per-ID error text: notes are a shard's.
    let notes: ReturnType<typeof extractionNotes> = { total: 0, notes: [] };
    let incomplete: DirStatus['incomplete'];
    if (db instanceof MergedDbReader) {
      for (const r of db.missingRanges()) {
        idsLeft += r.end - r.start + 1;
        if (firstRanges.length < 20) firstRanges.push(...rangesOf([r]));
      }
      // A merged ID is failed when no input made it final: every one of them is in the missing ranges.
      idsToRetry = Math.min(ids.failed ?? 0, idsLeft);
      for (const [state, n] of Object.entries(db.unfetchedMediaStates())) {
        if (state === 'queued') mediaQueued = n;
        else mediaFailed = n;
      }
      provenance = { kind: 'merged', inputs: db.inputSummaries() };
    } else {
      notes = extractionNotes(db.extractionErrors());
      const inc = db.incomplete(100);
      if (inc.total > 0) incomplete = { total: inc.total, ids: inc.first.map((r) => r.id), reasons: shardIncompleteReasons(dir).reasons };
      const left = leftIn(db);
      idsLeft = left.ids;
      idsToRetry = left.idsToRetry;
      idsIncomplete = left.incomplete;
      reasons = failureReasons(db);
      firstRanges.push(...rangesOf(left.set.ranges.slice(0, 20)));
      const media = db.mediaStates();
      mediaQueued = media.queued ?? 0;
      mediaFailed = media.failed ?? 0;
      const m = await readManifest(dir).catch(() => undefined);
      provenance = { kind: 'shard', profile: m?.profile, node: m?.node, software: m?.software, ranges: Array.isArray(m?.ranges) ? m.ranges.join(',') : m?.ranges, updatedAt: m?.updated_at };
    }
    const holder = lockHolder(dir);
    return {
      dir,
      kind,
      ...(holder ? { running: { pid: holder.pid, command: holder.command, startedAt: holder.startedAt, host: holder.host } } : {}),
      ids,
      ...(incomplete ? { incomplete } : {}),
      ...(notes.total > 0 ? { extractionNotes: notes } : {}),
      warcs,
      warcBytes: warcs.reduce((n, w) => n + w.bytes, 0),
      provenance,
      left: { ids: idsLeft, neverAttempted: idsLeft - idsToRetry - idsIncomplete, idsToRetry, incomplete: idsIncomplete, firstRanges, mediaQueued, mediaFailed, openWarcs: warcs.filter((w) => w.open).length, failureReasons: reasons },
    };
  } finally {
    db.close();
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** `743 IDs (743 never attempted, 0 to retry)`: every requested ID that is not final, and why. */
export function leftIds(l: Left): string {
  return `${l.ids} IDs (${l.neverAttempted} never attempted, ${l.idsToRetry} to retry${l.incomplete > 0 ? `, ${l.incomplete} incomplete` : ''})`;
}

/** The human-readable form of a status. */
export function formatStatus(s: DirStatus): string {
  const lines: string[] = [];
  lines.push(`${s.kind} ${s.dir}`);
  if (s.running) lines.push(`running: ${s.running.command} by process ${s.running.pid} (started ${s.running.startedAt}); these numbers are a snapshot`);
  lines.push(`ids: ${Object.entries(s.ids).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (s.incomplete) {
    const inc = s.incomplete;
    const shown = inc.ids.slice(0, 20).join(',');
    lines.push(`incomplete: ${inc.total} IDs miss a capture (${shown}${inc.total > 20 ? ',…' : ''}); the next crawl run tries them again:`, ...formatFailureReasons(inc.reasons));
  }
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
  else if (l.ids === 0 && !s.incomplete && l.mediaQueued === 0 && l.mediaFailed === 0 && l.openWarcs === 0) lines.push('left: nothing');
  else {
    lines.push(`left: ${leftIds(l)}; media ${l.mediaQueued} queued, ${l.mediaFailed} failed`);
    if (l.firstRanges.length) lines.push(`  IDs left: ${l.firstRanges.join(',')}${l.firstRanges.length >= 20 ? ',…' : ''}`);
  }
  if (l.failureReasons.length > 0) lines.push('failed IDs by reason:', ...formatFailureReasons(l.failureReasons));
  return `${lines.join('\n')}\n`;
}

/** `lifeboat status NODE_DIR`: a volunteer node's folder as one unit — every item shard, and their sum. */
export interface NodeDirStatus {
  dir: string;
  kind: 'node';
  /** From node.json (never its token). */
  nick?: string;
  tracker?: string;
  registered?: boolean;
  /** The item the node holds a lease on (it resumes it when started again). */
  itemInHand?: number;
  items: DirStatus[];
  ids: Record<string, number>;
  warcs: number;
  warcBytes: number;
  left: Left & { mediaQueued: number; mediaFailed: number; openWarcs: number };
}

export async function nodeStatus(dir: string, itemDirs: readonly string[]): Promise<NodeDirStatus> {
  let state: { nick?: unknown; tracker?: unknown; registered?: unknown; current?: { itemId?: unknown } } = {};
  try {
    state = JSON.parse(await readFile(join(dir, 'node.json'), 'utf8')) as typeof state;
  } catch {
    // No or unreadable node.json: the items still say what is there.
  }
  const items: DirStatus[] = [];
  for (const d of itemDirs) items.push(await shardStatus(d));
  const ids: Record<string, number> = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 };
  const left = { ids: 0, neverAttempted: 0, idsToRetry: 0, incomplete: 0, mediaQueued: 0, mediaFailed: 0, openWarcs: 0 };
  for (const s of items) {
    for (const [k, v] of Object.entries(s.ids)) ids[k] = (ids[k] ?? 0) + v;
    for (const k of Object.keys(left) as (keyof typeof left)[]) left[k] += s.left[k];
  }
  return {
    dir,
    kind: 'node',
    ...(typeof state.nick === 'string' ? { nick: state.nick } : {}),
    ...(typeof state.tracker === 'string' ? { tracker: state.tracker } : {}),
    ...(typeof state.registered === 'boolean' ? { registered: state.registered } : {}),
    ...(typeof state.current?.itemId === 'number' ? { itemInHand: state.current.itemId } : {}),
    items,
    ids,
    warcs: items.reduce((n, s) => n + s.warcs.length, 0),
    warcBytes: items.reduce((n, s) => n + s.warcBytes, 0),
    left,
  };
}

/** The human-readable form of a node folder's status: one line per item, then the sums. */
export function formatNodeStatus(s: NodeDirStatus): string {
  const lines: string[] = [];
  lines.push(`node ${s.dir}${s.nick ? `: nick ${s.nick}` : ''}${s.tracker ? ` at ${s.tracker}` : ''}${s.registered === false ? ' (not registered)' : ''}; ${s.items.length} item shards (${s.dir}/items/*)`);
  for (const i of s.items) {
    const counts = Object.entries(i.ids).map(([k, v]) => `${k} ${v}`).join(', ');
    const item = basename(i.dir);
    const state = i.running ? `  (being crawled by process ${i.running.pid})` : s.itemInHand !== undefined && String(s.itemInHand) === item ? '  (in hand: the node resumes it when started again)' : '';
    lines.push(`  item ${item}: ${counts}; ${i.warcs.length} WARCs, ${mib(i.warcBytes)}; left ${i.left.ids}${state}`);
  }
  lines.push(`ids: ${Object.entries(s.ids).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(`warcs: ${s.warcs} files, ${mib(s.warcBytes)}${s.left.openWarcs ? ` (${s.left.openWarcs} unfinished .open)` : ''}`);
  const l = s.left;
  if (l.ids === 0 && l.mediaQueued === 0 && l.mediaFailed === 0 && l.openWarcs === 0) lines.push('left: nothing');
  else {
    lines.push(`left: ${leftIds(l)}; media ${l.mediaQueued} queued, ${l.mediaFailed} failed`);
    // A node gives back what it did not finish: the tracker hands those IDs out again.
    if (l.ids > 0) lines.push('  IDs of an item given back (Ctrl-C, failures) go to the tracker again; the item in hand, if any, resumes when the node starts again');
  }
  return `${lines.join('\n')}\n`;
}
