import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../config/logger.js';
import type { CaptureTrace, IdTrace } from '../../crawler/run/capture-plan.js';
import { gracefulInterrupt, type CliIo } from './cli-io.js';
import { EXIT } from './cli-options.js';

export interface ProbeCommandOptions {
  profile: string;
  ids: string;
  baseUrl?: string;
  allowPrivateNetwork?: boolean;
  json?: boolean;
}

/** Probe is for trying a profile on a few IDs, not for crawling: more is refused (use `crawl`). */
export const MAX_PROBE_IDS = 1000;
/** Field values are shortened to this many characters in the output (text and JSON). */
const FIELD_CHARS = 200;

/**
 * `lifeboat probe` (issue 23 §3): runs the real crawl (crawler/run/crawl.ts, one worker, media
 * not fetched) over a few IDs into a temporary folder that is removed afterwards, and prints per
 * ID what the capture plan did (its IdTrace): the status and why, each capture, the fields, the
 * media URLs found and the notes. Returns the exit code: 3 when an ID failed or is incomplete.
 */
export async function probeCommand(o: ProbeCommandOptions, io: CliIo): Promise<number> {
  const [{ loadProfile }, { runCrawl }, { discoverMaxId }, { createCodec }, { parseRanges }, { checkCrawlScope }, { ScopeGuard }] = await Promise.all([
    import('../../config/profile.js'),
    import('../../crawler/run/crawl.js'),
    import('../../crawler/run/discover.js'),
    import('../../config/id-codec.js'),
    import('../../config/id-ranges.js'),
    import('../../crawler/fetch/scope-preflight.js'),
    import('../../crawler/fetch/scope-guard.js'),
  ]);
  const profile = loadProfile(o.profile, o.baseUrl ? { baseUrl: o.baseUrl } : {});
  const codec = createCodec(profile.codec);
  const allowPrivateNetwork = !!o.allowPrivateNetwork;
  let idsText = o.ids;
  if (/latest/.test(idsText)) {
    await checkCrawlScope(profile, { allowPrivateNetwork });
    idsText = idsText.replace(/latest/g, codec.encode(await discoverMaxId(profile, { allowPrivateNetwork })));
  }
  const ranges = parseRanges(idsText, codec);
  if (ranges.size > MAX_PROBE_IDS) {
    io.stderr.write(`error: --ids ${o.ids}: ${ranges.size} IDs; probe tries at most ${MAX_PROBE_IDS} (use lifeboat crawl for more)\n`);
    return EXIT.usage;
  }
  const guard = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork });
  const outOfScope = (url: string): string | undefined => {
    try {
      guard.checkUrl(url);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  };
  const traces: IdTrace[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'lifeboat-probe-'));
  const interrupt = gracefulInterrupt(io, 'finishing the IDs in flight');
  try {
    await runCrawl({
      profile,
      ranges,
      outDir: dir,
      node: 'probe',
      // Only errors: what each ID did is the output below.
      logger: createLogger((e) => {
        if (e.level === 'error') io.stderr.write(`error: ${e.message}\n`);
      }, 'probe'),
      allowPrivateNetwork,
      workers: 1,
      // Media URLs are listed, not fetched.
      inlineMedia: [],
      signal: interrupt.signal,
      onTrace: (t) => traces.push(t),
    });
  } finally {
    interrupt.dispose();
    await rm(dir, { recursive: true, force: true });
  }
  traces.sort((a, b) => codec.decode(a.id) - codec.decode(b.id));
  for (const t of traces) {
    // A media URL a crawl would not fetch (scope, robots aside): said here, as the crawl records it as skipped.
    for (const url of t.media) {
      const why = outOfScope(url);
      if (why) t.notes.push(`media not fetched (out of scope): ${why}`);
    }
    io.stdout.write(o.json ? `${JSON.stringify(probeJson(t))}\n` : formatTrace(t));
  }
  const counts: Record<string, number> = {};
  for (const t of traces) counts[t.status] = (counts[t.status] ?? 0) + 1;
  const incomplete = traces.filter((t) => t.incomplete).length;
  const summary = `probe: ${traces.length} of ${ranges.size} IDs: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}; incomplete ${incomplete}; nothing kept`;
  if (o.json) io.stderr.write(`${summary}\n`);
  else io.stdout.write(`${summary}\n`);
  if (interrupt.signal.aborted) {
    io.stderr.write('interrupted\n');
    return EXIT.error;
  }
  return (counts.failed ?? 0) > 0 || incomplete > 0 ? EXIT.failedIds : EXIT.ok;
}

function shorten(v: unknown): unknown {
  if (typeof v === 'string') return v.length > FIELD_CHARS ? `${v.slice(0, FIELD_CHARS)}…` : v;
  const text = JSON.stringify(v) ?? String(v);
  return text.length > FIELD_CHARS ? `${text.slice(0, FIELD_CHARS)}…` : v;
}

/** The `--json` line of one ID: `id`, `status`, `why`, `captures` (each `name`, `url`, `http`, `bytes`, `skipped`), `fields`, `media`, `notes`. */
export function probeJson(t: IdTrace): Record<string, unknown> {
  return {
    id: t.id,
    status: t.status,
    why: t.why,
    incomplete: t.incomplete ?? null,
    captures: t.captures.map((c) => ({ name: c.name, url: c.url, http: c.http, bytes: c.bytes, skipped: c.skipped ?? null, ...(c.error ? { error: c.error } : {}), ...(c.tried ? { tried: c.tried } : {}) })),
    fields: Object.fromEntries(Object.entries(t.fields).map(([k, v]) => [k, shorten(v)])),
    media: t.media,
    notes: t.notes,
  };
}

function captureLine(c: CaptureTrace): string[] {
  const head = `  ${c.name}: `;
  if (c.skipped && c.http === null) return [`${head}skipped (${c.skipped})`];
  const lines = [`${head}${c.url ?? '(no URL)'} → ${c.http === null ? 'no answer' : `HTTP ${c.http}`}${c.bytes !== null ? `, ${c.bytes} bytes` : ''}${c.error ? ` — ${c.error}` : ''}${c.skipped ? ` — ${c.skipped}` : ''}`];
  for (const [i, a] of (c.tried ?? []).entries()) lines.push(`      alternative ${i + 1}: ${a.url} → ${a.http === null ? 'no answer' : `HTTP ${a.http}`} (${a.outcome}${a.error ? `: ${a.error}` : ''})`);
  return lines;
}

export function formatTrace(t: IdTrace): string {
  const lines = [`ID ${t.id}: ${t.status}${t.incomplete ? ' (incomplete)' : ''} — ${t.why}`];
  for (const c of t.captures) lines.push(...captureLine(c));
  const fields = Object.entries(t.fields);
  if (fields.length > 0) {
    lines.push('  fields:');
    for (const [k, v] of fields) lines.push(`    ${k}: ${JSON.stringify(shorten(v))}`);
  }
  if (t.media.length > 0) {
    lines.push(`  media (${t.media.length}):`);
    for (const m of t.media) lines.push(`    ${m}`);
  }
  if (t.notes.length > 0) {
    lines.push('  notes:');
    for (const n of t.notes) lines.push(`    - ${n}`);
  }
  return `${lines.join('\n')}\n`;
}
