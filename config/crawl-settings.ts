/**
 * The crawl's one resolved settings object (ARCHITECTURE.md "House rules"): built once from the profile, the
 * run's flags and the defaults written here, then passed whole through the crawl, its parts, the
 * worker threads and the fetch stack. Precedence: flags > profile > defaults. Every value is
 * structured-cloneable (a worker thread receives it as it is).
 */
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { InputError } from './errors.js';
import type { Profile } from './profile.js';
import { MEDIA_KINDS, mediaKindOf } from './media-kinds.js';
import { formatKeyPath, issueMessage } from './schema-issue.js';

/** What a caller may set for a run (the CLI's flags, a node's options, tests); unknown keys are refused. */
export const crawlFlagsSchema = z.strictObject({
  /** Node name: the last part of each WARC file name. */
  node: z.string().min(1),
  /** Allow loopback and private addresses (the demo and tests). */
  allowPrivateNetwork: z.boolean().default(false),
  /** Requests in flight for the whole run. Default: the profile's `politeness.concurrency`. */
  concurrency: z.number().int().min(1).optional(),
  /** Requests per second per host for the whole run. Default: the profile's `politeness.rate`. */
  ratePerSec: z.number().positive().optional(),
  /**
   * Crawl worker threads, IDs split among them (crawl-workers.ts). Default 1: on the 2-core
   * benchmark machine, where the platform shares the cores, 2 workers were no faster
   * (BENCHMARKS.md). Always 1 for profiles with browser captures (one Chromium per crawl).
   */
  workers: z.number().int().min(1).default(1),
  /** Rotate WARC files at this size. */
  warcSizeBytes: z.number().int().min(1).default(1024 ** 3),
  /** Group commit: at most this long between a record's write and its ID becoming final. */
  commitIntervalMs: z.number().int().min(1).default(250),
  /** A URL or e-mail address for the User-Agent and warcinfo. */
  contact: z.string().optional(),
  /** Upper bound of the first retry's delay (full-jitter exponential backoff, HTTP and browser alike). */
  backoffBaseMs: z.number().int().min(0).default(250),
  /** Browser contexts (pages at once) for `render: browser` captures. */
  browserConcurrency: z.number().int().min(1).default(2),
  /** Chromium executable (the CLI resolves --chromium / LIFEBOAT_CHROMIUM). Default: the browser pool's. */
  chromiumPath: z.string().min(1).optional(),
  /** Store a PNG screenshot of each browser-captured page as a `resource` record. */
  screenshots: z.boolean().default(false),
  /** Pages a browser context serves before it is replaced. Default: the browser pool's. */
  browserPagesPerContext: z.number().int().min(1).optional(),
  /**
   * Which extracted media this run fetches itself (issue 13): `all` (a standalone crawl), or only
   * these kinds — the others stay queued in the shard for a node to report to its tracker.
   */
  inlineMedia: z.union([z.literal('all'), z.array(z.enum(MEDIA_KINDS))]).default('all'),
  /** `--max-bandwidth` (issue 14): response body bytes per second over all requests of the run (smoothed over ~1 s). Default: no cap. */
  maxBandwidthBytesPerSec: z.number().positive().optional(),
});

export type CrawlFlags = z.input<typeof crawlFlagsSchema>;

const CRAWL_FLAG_KEYS = Object.keys(crawlFlagsSchema.shape) as (keyof CrawlFlags)[];

/** The crawl flags among a caller's options (a node's, say), set ones only: what it passes on to each crawl. */
export function pickCrawlFlags(o: object): Partial<CrawlFlags> {
  const source = o as Record<string, unknown>;
  return Object.fromEntries(CRAWL_FLAG_KEYS.filter((k) => source[k] !== undefined).map((k) => [k, source[k]])) as Partial<CrawlFlags>;
}

/** The resolved settings of a run, or of one part of it (`partSettings`). */
export type CrawlSettings = Omit<z.output<typeof crawlFlagsSchema>, 'concurrency' | 'ratePerSec'> & {
  profile: Profile;
  /** Requests in flight (for this run, or this part). */
  concurrency: number;
  /** Requests per second per host (for this run, or this part). */
  ratePerSec: number;
  /** Requests in flight per host (for this run, or this part). */
  perHostConcurrency: number;
};

/** Builds the run's settings; a bad value is an InputError naming the key. */
export function resolveCrawlSettings(profile: Profile, flags: CrawlFlags): CrawlSettings {
  const parsed = crawlFlagsSchema.safeParse(flags);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const at = formatKeyPath(issue.path);
    throw new InputError(`crawl options${at ? ` ${at}` : ''}: ${issueMessage(issue, crawlFlagsSchema)}`, { code: 'E_CRAWL_OPTION' });
  }
  const f = parsed.data;
  const pol = profile.politeness;
  const browser = profile.captures.some((c) => c.render === 'browser');
  return {
    ...f,
    profile,
    workers: browser ? 1 : Math.min(availableParallelism() * 2, f.workers),
    concurrency: f.concurrency ?? pol.concurrency,
    ratePerSec: f.ratePerSec ?? pol.ratePerSec,
    perHostConcurrency: pol.perHostConcurrency,
  };
}

/** Whether a run with these settings fetches this extracted media URL itself (`inlineMedia`). */
export function fetchesInline(settings: Pick<CrawlSettings, 'inlineMedia'>, url: string): boolean {
  return settings.inlineMedia === 'all' || settings.inlineMedia.includes(mediaKindOf(url));
}

const share = (total: number, count: number): number => Math.max(1, Math.ceil(total / count));

/** One worker's share of a run's settings: the per-host and in-flight limits split evenly. */
export function partSettings(s: CrawlSettings, count: number): CrawlSettings {
  if (count === 1) return s;
  return {
    ...s,
    concurrency: share(s.concurrency, count),
    ratePerSec: s.ratePerSec / count,
    perHostConcurrency: share(s.perHostConcurrency, count),
    ...(s.maxBandwidthBytesPerSec ? { maxBandwidthBytesPerSec: s.maxBandwidthBytesPerSec / count } : {}),
  };
}
