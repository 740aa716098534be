import type { Command } from 'commander';
import type { CrawlFlags } from '../../config/crawl-settings.js';
import type { Logger } from '../../config/logger.js';
import type { NodeCaps } from '../../crawler/run/caps.js';
import { byteSize, capSize, nodeName, nonNegativeInt, positiveHours, positiveInt } from './cli-options.js';

/**
 * The crawl flags, defined once for `lifeboat crawl` and `lifeboat node` (a node crawls each item
 * with the same engine): one declaration, one help text, one way from flag to setting. Flags a
 * node has no use for (`--follow`, `--until`, `--workers`) are the crawl's only.
 */
interface FlagDef {
  flags: string;
  help: string;
  parse?: (value: string) => unknown;
  /** Also a `node` flag (default: crawl only). */
  node?: boolean;
  /** The node's help, where the meaning differs for a node. */
  nodeHelp?: string;
}

const FLAGS: readonly FlagDef[] = [
  { flags: '--concurrency <n>', help: 'requests in flight at once', parse: positiveInt('--concurrency'), node: true },
  { flags: '--workers <n>', help: 'crawl threads, IDs split among them, for a CPU-bound crawl on a many-core machine (default 1)', parse: positiveInt('--workers') },
  { flags: '--rate <n>', help: 'requests per second per host', parse: positiveInt('--rate'), node: true },
  { flags: '--base-url <url>', help: "override the profile's base_url", node: true },
  { flags: '--allow-private-network', help: 'allow loopback and private addresses (the demo and tests)', node: true },
  { flags: '--warc-size <bytes>', help: 'rotate WARC files at this size (default 1G)', parse: byteSize, node: true },
  { flags: '--node <name>', help: 'node name in WARC file names (default: host name)', nodeHelp: 'node name in WARC file names (default: the nick)', node: true },
  { flags: '--contact <url-or-email>', help: 'operator contact added to the User-Agent and warcinfo', node: true },
  { flags: '--quiet', help: 'only the summary line', node: true },
  { flags: '--json', help: 'machine-readable output (JSON lines)', node: true },
  { flags: '--browser-concurrency <n>', help: 'browser contexts (pages at once) for render: browser captures (default 2)', parse: positiveInt('--browser-concurrency'), node: true },
  { flags: '--chromium <path>', help: 'Chromium executable (default: $LIFEBOAT_CHROMIUM, else /usr/bin/chromium)', node: true },
  { flags: '--screenshots', help: 'store a PNG screenshot of each browser-captured page as a WARC resource record', node: true },
  { flags: '--follow', help: 'with --ids …-latest: keep crawling the new IDs the platform publishes, until Ctrl-C or --until' },
  { flags: '--follow-secs <n>', help: 'seconds between asks for the latest ID with --follow (default 60)', parse: positiveInt('--follow-secs') },
  { flags: '--follow-max-step <n>', help: 'with --follow: a jump of the latest ID larger than this waits for a later poll to confirm it (default: 10 x the recent growth per poll, at least 1000)', parse: positiveInt('--follow-max-step') },
  { flags: '--follow-confirm-secs <n>', help: 'with --follow: how long such a jump must be seen, every poll answering at least as high, before it is crawled (default: 3 polls, at least 60; 0: the next poll confirms)', parse: nonNegativeInt('--follow-confirm-secs') },
  { flags: '--recheck-window <n>', help: 'with --follow: an ID within this many IDs of the newest that answers missing is asked again later (default 1000; 0: only the age rule)', parse: nonNegativeInt('--recheck-window') },
  { flags: '--recheck-attempts <n>', help: 'with --follow: how many times such an ID is asked again before missing is final (default 3; 0: no rechecks)', parse: nonNegativeInt('--recheck-attempts') },
  { flags: '--recheck-delay-secs <n>', help: 'with --follow: seconds before the first recheck, doubling each time (default 60)', parse: positiveInt('--recheck-delay-secs') },
  { flags: '--recheck-age-secs <n>', help: 'with --follow: an ID a poll found less than this many seconds ago that answers missing is asked again too, wherever it lies (default 600; 0: off)', parse: nonNegativeInt('--recheck-age-secs') },
  { flags: '--recheck <status>', help: 'ask again for the IDs of --ids this shard holds as missing (only: missing)' },
  { flags: '--until <time>', help: 'stop at this time (RFC 3339, e.g. 2026-12-01T18:00:00Z)' },
  { flags: '--max-bandwidth <size>', help: 'cap on response bytes per second over all requests, smoothed (e.g. 20M)', parse: capSize('--max-bandwidth'), node: true },
  {
    flags: '--max-disk <size>',
    help: 'stop when the --out folder reaches this size (e.g. 50G)',
    nodeHelp: 'stop claiming when the --out folder reaches this size (e.g. 50G); with uploads, delete verified-uploaded WARCs first',
    parse: capSize('--max-disk'),
    node: true,
  },
  { flags: '--max-hours <h>', help: 'stop after this many hours', nodeHelp: 'stop claiming new items after this many hours', parse: positiveHours, node: true },
];

/** Adds the crawl flags to `crawl` (all of them) or to `node` (those a node passes on to its items' crawls). */
export function addCrawlFlags(cmd: Command, forCommand: 'crawl' | 'node'): Command {
  for (const f of FLAGS) {
    if (forCommand === 'node' && !f.node) continue;
    const help = forCommand === 'node' ? (f.nodeHelp ?? f.help) : f.help;
    if (f.parse) cmd.option(f.flags, help, f.parse as (value: string, previous: unknown) => unknown);
    else cmd.option(f.flags, help);
  }
  return cmd;
}

/** What commander gives for the crawl flags (its names, derived from the flags). */
export interface CrawlFlagValues {
  concurrency?: number;
  workers?: number;
  rate?: number;
  baseUrl?: string;
  allowPrivateNetwork?: boolean;
  warcSize?: number;
  node?: string;
  contact?: string;
  quiet?: boolean;
  json?: boolean;
  browserConcurrency?: number;
  chromium?: string;
  screenshots?: boolean;
  follow?: boolean;
  followSecs?: number;
  followMaxStep?: number;
  followConfirmSecs?: number;
  recheckWindow?: number;
  recheckAttempts?: number;
  recheckDelaySecs?: number;
  recheckAgeSecs?: number;
  recheck?: string;
  until?: string;
  maxBandwidth?: number;
  maxDisk?: number;
  maxHours?: number;
}

/** Keeps the keys whose value is set: defaults are the settings schema's, applied there once. */
function defined<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== false)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/**
 * The crawl settings the flags ask for (config/crawl-settings.ts resolves them with the profile;
 * the only renames are here: `--rate` → ratePerSec, `--warc-size` → warcSizeBytes,
 * `--max-bandwidth` → maxBandwidthBytesPerSec, `--chromium` → chromiumPath).
 */
export function crawlFlagsFrom(o: CrawlFlagValues, env: NodeJS.ProcessEnv, defaultNode?: string): CrawlFlags {
  return {
    node: nodeName(o.node ?? defaultNode),
    ...defined({
      allowPrivateNetwork: o.allowPrivateNetwork,
      concurrency: o.concurrency,
      workers: o.workers,
      ratePerSec: o.rate,
      warcSizeBytes: o.warcSize,
      contact: o.contact,
      browserConcurrency: o.browserConcurrency,
      chromiumPath: o.chromium ?? env.LIFEBOAT_CHROMIUM,
      screenshots: o.screenshots,
      maxBandwidthBytesPerSec: o.maxBandwidth,
    }),
  };
}

/** `--max-disk`, `--max-hours`, `--max-bandwidth` as one NodeCaps (the crawl and the node alike), or none when no cap is set. */
export async function capsFrom(o: CrawlFlagValues, outDir: string, log: Logger): Promise<NodeCaps | undefined> {
  if (o.maxDisk === undefined && o.maxHours === undefined && o.maxBandwidth === undefined) return undefined;
  const { NodeCaps } = await import('../../crawler/run/caps.js');
  return new NodeCaps({ outDir, log, ...defined({ maxDiskBytes: o.maxDisk, maxHours: o.maxHours, maxBandwidthBytesPerSec: o.maxBandwidth }) });
}
