import { existsSync } from 'node:fs';
import { InputError } from '../../config/errors.js';
import { createCodec, type IdCodec } from '../../config/id-codec.js';
import type { RangeSet } from '../../config/id-ranges.js';
import { type ItemStore, type TrackerStats, parseSeedRanges } from '../store/item-store.js';
import { openItemStore } from '../store/open-store.js';
import { MediaScope, type ReportedMedia, mediaHostsOf } from '../store/media-urls.js';
import { PROJECT_NAME, PROJECT_NAME_HINT, type ProjectConfig } from '../store/project.js';

/**
 * The tracker's admin commands. Both take the project's name (the CLI reads it from the project
 * file given as --project, as `serve` does) and refuse what would quietly go wrong: a name that
 * breaks the rule `serve` uses, a project the database does not hold (a typo) unless `create`,
 * and — for `status` — a SQLite file that does not exist (it is never created).
 */
function checkName(project: string): void {
  if (!PROJECT_NAME.test(project)) throw new InputError(`project name "${project}": ${PROJECT_NAME_HINT}`, { code: 'E_PROJECT_NAME' });
}

/** `sqlite:PATH` that does not exist: the error to give instead of creating an empty database. */
function missingSqlite(db: string): string | undefined {
  if (!db.startsWith('sqlite:')) return undefined;
  const path = db.slice('sqlite:'.length);
  return path && !existsSync(path) ? path : undefined;
}

async function requireProject(store: ItemStore, db: string, project: string, hint: string): Promise<void> {
  const known = await store.listProjects();
  if (known.includes(project)) return;
  const holds = known.length === 0 ? 'it holds no project yet' : `it holds ${known.slice(0, 5).join(', ')}${known.length > 5 ? ', …' : ''}`;
  throw new InputError(`project ${project} is not in ${db} (${holds}); ${hint}`, { code: 'E_NO_PROJECT' });
}

/**
 * Before `lifeboat tracker serve`: a database that does not hold the project (a misspelt --db or
 * project name) is refused unless `create`, as `seed` refuses it — serving it would start an empty
 * project that `status` then reports on.
 */
export async function checkServeDb(options: { db: string; project: string; create?: boolean }): Promise<void> {
  const { db, project } = options;
  checkName(project);
  if (options.create) return;
  const missing = missingSqlite(db);
  if (missing) throw new InputError(`tracker database ${missing} does not exist; check --db, or add --create to start project ${project} in a new one`, { code: 'E_NO_DB' });
  const store = await openItemStore({ db, project });
  try {
    await requireProject(store, db, project, 'check the name and --db, or add --create to start it');
  } finally {
    await store.close();
  }
}

/**
 * `lifeboat tracker seed`: adds the IDs the project does not hold yet, as items of at most
 * `itemSize` IDs (seeding a range twice changes nothing). `ids` is a RangeSet or text —
 * `1-1000,5000-6000`, or a merge's missing-ranges.txt (one range per line, `#` comments) — read
 * with `codec` (default integer). A project the database does not hold needs `create`.
 */
export async function seedCommand(options: {
  db: string;
  project: string;
  ids: RangeSet | string;
  itemSize: number;
  codec?: IdCodec;
  create?: boolean;
  /** `--recheck missing` (issue 21 §1): the IDs are asked again even though items hold them. */
  recheck?: boolean;
}): Promise<{ items: number; ids: number; skipped: number; seconds: number; summary: string }> {
  const { db, project, itemSize, codec = createCodec('integer') } = options;
  checkName(project);
  const ids = typeof options.ids === 'string' ? parseSeedRanges(options.ids, codec) : options.ids;
  const missing = missingSqlite(db);
  if (missing && !options.create) throw new InputError(`tracker database ${missing} does not exist; check --db, or add --create to start project ${project} in a new one`, { code: 'E_NO_DB' });
  const store = await openItemStore({ db, project });
  try {
    if (!options.create) await requireProject(store, db, project, 'check the name and --db, or add --create to start it');
    const started = performance.now();
    if (options.recheck) {
      if (options.create) throw new InputError('--recheck asks again for IDs of an existing project: drop --create', { code: 'E_USAGE' });
      const r = await store.seedRecheck(ids, itemSize);
      const seconds = (performance.now() - started) / 1000;
      const summary = `queued ${r.ids.toLocaleString('en-US')} IDs in ${r.items.toLocaleString('en-US')} recheck items of project ${project}: nodes ask the platform for them again (an ID found now is archived; merge keeps archived over missing)`;
      return { ...r, skipped: 0, seconds, summary };
    }
    const result = await store.seedNew(ids, itemSize);
    const seconds = (performance.now() - started) / 1000;
    const n = (v: number) => v.toLocaleString('en-US');
    const skipped = result.skipped > 0 ? `; ${n(result.skipped)} IDs were already in the project and were left as they are` : '';
    const summary = `seeded ${n(result.items)} items (${n(result.ids)} IDs, up to ${itemSize} per item) into project ${project} in ${seconds.toFixed(2)} s${skipped}`;
    return { ...result, seconds, summary };
  } finally {
    await store.close();
  }
}

/**
 * `lifeboat tracker seed --media-from-file`: queues the media URLs of `text` (one per line, `#`
 * comments; a merge's missing-media.txt) as media work, including URLs the project has seen
 * whose media items finished without archiving them. Every URL is checked as a node's report is
 * (http(s), on the media hosts); a bad line is an InputError naming `file` and the line.
 */
export async function seedMediaCommand(options: { db: string; project: ProjectConfig; text: string; file: string; create?: boolean }): Promise<{ queued: number; known: number; summary: string }> {
  const { db, project, text, file } = options;
  checkName(project.name);
  // The organiser's own list (a merge's missing-media.txt): any port is taken; nodes' reports are held to media.ports.
  const scope = new MediaScope(mediaHostsOf(project), 'any');
  const media: ReportedMedia[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const url = line.replace(/#.*$/, '').trim();
    if (!url) return;
    try {
      media.push(...scope.check([url]));
    } catch (err) {
      throw new InputError(`${file}:${i + 1}: ${(err as Error).message.replace(/^media\[0\]: /, '')}`, { code: 'E_USAGE', cause: err });
    }
  });
  const missing = missingSqlite(db);
  if (missing && !options.create) throw new InputError(`tracker database ${missing} does not exist; check --db, or add --create to start project ${project.name} in a new one`, { code: 'E_NO_DB' });
  const store = await openItemStore({ db, project: project.name });
  try {
    if (!options.create) await requireProject(store, db, project.name, 'check the name and --db, or add --create to start it');
    let queued = 0;
    let known = 0;
    for (let i = 0; i < media.length; i += 10_000) {
      const r = await store.queueMedia(media.slice(i, i + 10_000), { requeue: true });
      queued += r.queued;
      known += r.known;
    }
    const n = (v: number) => v.toLocaleString('en-US');
    const summary = `queued ${n(queued)} media URLs into project ${project.name}${known > 0 ? `; ${n(known)} were already queued or in a live media item and were left as they are` : ''}`;
    return { queued, known, summary };
  } finally {
    await store.close();
  }
}

/** `lifeboat tracker status`: the project's totals and leaderboard as printable text. */
export async function statusCommand(options: {
  db: string;
  project: string;
  now?: number;
  rateWindowMs?: number;
}): Promise<{ stats: TrackerStats; summary: string }> {
  const { db, project, now = Date.now(), rateWindowMs = 300_000 } = options;
  checkName(project);
  const missing = missingSqlite(db);
  if (missing) throw new InputError(`tracker database ${missing} does not exist; give the --db the tracker serves with`, { code: 'E_NO_DB' });
  const store = await openItemStore({ db, project });
  try {
    await requireProject(store, db, project, 'check the name in the project file and --db');
    const stats = await store.stats({ now, windowMs: rateWindowMs });
    return { stats, summary: formatStatus(stats, await store.mediaCounts()) };
  } finally {
    await store.close();
  }
}

/** `media`: the project's media URLs (issue 13), a line of their own when there are any. */
export function formatStatus(s: TrackerStats, media?: { urls: number; done: number; pending: number }): string {
  const n = (v: number) => v.toLocaleString('en-US');
  const pct = s.ids.total === 0 ? 0 : (100 * s.ids.done) / s.ids.total;
  const lines = [
    `project ${s.project}: ${n(s.ids.done)} / ${n(s.ids.total)} IDs done (${pct.toFixed(2)} %)`,
    `items: ${n(s.items.done)} done, ${n(s.items.claimed)} leased, ${n(s.items.queued)} queued (${n(s.items.total)} total)`,
    ...(media && media.urls > 0 ? [`media: ${n(media.done)} / ${n(media.urls)} URLs done, ${n(media.pending)} not yet in a media item`] : []),
    `bytes ${n(s.bytes)}; ${n(s.activeNodes)} active nodes; ${s.rateIdsPerSec} IDs/s over the last ${s.rateWindowSecs} s; ${eta(s, media)}`,
  ];
  if (s.nodes.length > 0) {
    lines.push('', 'nick                              items          IDs            bytes     IDs/s');
    for (const node of s.nodes) {
      lines.push(
        `${node.nick.padEnd(32)} ${n(node.items).padStart(7)} ${n(node.ids).padStart(12)} ${n(node.bytes).padStart(16)} ${String(node.rateIdsPerSec).padStart(9)}`,
      );
    }
  }
  return lines.join('\n');
}

/** The end of the totals line: an empty project is not "all done", it has nothing to do yet. */
function eta(s: TrackerStats, media?: { urls: number }): string {
  if (s.items.total === 0 && (media?.urls ?? 0) === 0) return 'nothing seeded yet: add IDs with lifeboat tracker seed --project FILE --ids RANGES';
  if (s.etaSecs === null) return 'no ETA (nothing moving)';
  return s.etaSecs === 0 ? 'all done' : `ETA ${duration(s.etaSecs)}`;
}

/** `3 d 4 h`, `2 h 5 min`, `7 min`, `40 s`: an ETA a person reads at a glance. */
export function duration(secs: number): string {
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  return m > 0 ? `${m} min` : `${secs} s`;
}
