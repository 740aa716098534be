/**
 * Browser-capture benchmark (issue 5): pages per second crawling the demo platform with the
 * `demo` profile (post API + HTML page over HTTP) beside `demo-browser` (post API over HTTP +
 * the JS-rendered page in Chromium, recording everything it loads), with 2, 4 and 8 browser
 * contexts; and the peak RSS of this process plus every Chromium process it started (sampled
 * from /proc every `--sample-ms`, default 1000). Sampling is not free: reading every Chromium
 * process's smaps_rollup every 100 ms cost more CPU than the crawl itself on one core (issue 17:
 * 0.33 pages/s with it, 1.17 without), so keep it coarse when measuring speed.
 *
 *   npm run build && taskset -c 1 node dist/scripts/bench/bench-browser.js [--posts 200] [--contexts 2,4,8] [--sample-ms 1000] [--chromium PATH]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { silentLogger } from '../../config/logger.js';
import { loadProfile } from '../../config/profile.js';
import { runCrawl } from '../../crawler/run/crawl.js';
import { RangeSet } from '../../config/id-ranges.js';
import { treeMemory } from './process-tree.js';
import { startDemoPlatform } from '../demo/demo-platform.js';

export interface BrowserBenchOptions {
  /** IDs crawled per case (1..posts). Default 200. */
  posts?: number;
  /** Browser context counts to measure. Default [2, 4, 8]. */
  contexts?: number[];
  chromiumPath?: string;
  screenshots?: boolean;
  /** Memory sampling interval. Default 1000 ms. */
  sampleMs?: number;
}

export interface BrowserBenchRow {
  case: string;
  contexts: number | null;
  ids: number;
  /** Archived posts (the pages captured). */
  pages: number;
  seconds: number;
  pagesPerSec: number;
  /** Peak of the summed RSS of this process and its Chromium processes (overstates: shared pages counted per process). */
  peakRssMiB: number;
  /** Peak of the summed PSS (shared pages divided): the better measure of what the machine needs. */
  peakPssMiB: number;
  records: number;
}

const MIB = 1024 * 1024;

async function measure(run: () => Promise<{ pages: number; records: number }>, sampleMs: number): Promise<{ seconds: number; peakRss: number; peakPss: number; pages: number; records: number }> {
  let peakRss = 0;
  let peakPss = 0;
  const sample = (): void => {
    const m = treeMemory();
    peakRss = Math.max(peakRss, m.rss);
    peakPss = Math.max(peakPss, m.pss);
  };
  sample();
  const timer = setInterval(sample, sampleMs);
  const t0 = performance.now();
  try {
    const r = await run();
    return { seconds: (performance.now() - t0) / 1000, peakRss, peakPss, ...r };
  } finally {
    clearInterval(timer);
  }
}

export async function runBrowserBench(options: BrowserBenchOptions = {}): Promise<BrowserBenchRow[]> {
  const { posts = 200, contexts = [2, 4, 8], chromiumPath, screenshots = false, sampleMs = 1000 } = options;
  const platform = await startDemoPlatform({ posts, trackPaths: false });
  const tmp = mkdtempSync(join(tmpdir(), 'lifeboat-bench-browser-'));
  const rows: BrowserBenchRow[] = [];
  try {
    const crawlCase = async (name: string, profileName: string, n: number | null): Promise<void> => {
      const profile = loadProfile(profileName, { baseUrl: platform.url });
      const m = await measure(async () => {
        const result = await runCrawl({
          profile,
          ranges: RangeSet.fromJSON([[1, posts]]),
          outDir: join(tmp, name),
          node: 'bench',
          logger: silentLogger,
          allowPrivateNetwork: true,
          ...(n !== null ? { browserConcurrency: n } : {}),
          ...(chromiumPath ? { chromiumPath } : {}),
          screenshots,
        });
        return { pages: result.counts.archived, records: result.stats.records };
      }, sampleMs);
      rows.push({
        case: name,
        contexts: n,
        ids: posts,
        pages: m.pages,
        seconds: m.seconds,
        pagesPerSec: m.pages / m.seconds,
        peakRssMiB: m.peakRss / MIB,
        peakPssMiB: m.peakPss / MIB,
        records: m.records,
      });
    };
    await crawlCase('http', 'demo', null);
    for (const n of contexts) await crawlCase(`browser-${n}`, 'demo-browser', n);
  } finally {
    await platform.close();
    rmSync(tmp, { recursive: true, force: true });
  }
  return rows;
}

export function formatBrowserBench(rows: readonly BrowserBenchRow[]): string {
  const lines = ['| mode | contexts | IDs | pages | s | pages/s | peak RSS MiB (summed) | peak PSS MiB | records |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    lines.push(`| ${r.case.startsWith('http') ? 'HTTP' : 'browser'} | ${r.contexts ?? '–'} | ${r.ids} | ${r.pages} | ${r.seconds.toFixed(1)} | ${r.pagesPerSec.toFixed(2)} | ${r.peakRssMiB.toFixed(0)} | ${r.peakPssMiB.toFixed(0)} | ${r.records} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const rows = await runBrowserBench({
    ...(arg('--posts') ? { posts: Number(arg('--posts')) } : {}),
    ...(arg('--contexts') ? { contexts: arg('--contexts')!.split(',').map(Number) } : {}),
    ...(arg('--chromium') ? { chromiumPath: arg('--chromium')! } : {}),
    screenshots: process.argv.includes('--screenshots'),
    ...(arg('--sample-ms') ? { sampleMs: Number(arg('--sample-ms')) } : {}),
  });
  process.stdout.write(`${formatBrowserBench(rows)}\n`);
}
