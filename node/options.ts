import type { CrawlFlags } from '../config/crawl-settings.js';
import type { Logger } from '../config/logger.js';
import type { ItemKind } from '../config/media-kinds.js';
import type { TrackerClient } from '../tracker/client/client.js';
import type { CrawlStats } from '../crawler/fetch/crawl-stats.js';
import type { NodeCaps } from '../crawler/run/caps.js';

/**
 * A node's own options, and the crawl flags it passes on to each item's crawl, as the crawl
 * settings name them (config/crawl-settings.ts; the node name is `nodeName`, and which media an
 * item fetches itself is the tracker's to say).
 */
export interface NodeOptions extends Omit<CrawlFlags, 'node' | 'inlineMedia'> {
  trackerUrl: string;
  nick: string;
  outDir: string;
  logger: Logger;
  nodeName: string;
  baseUrl?: string;
  signal?: AbortSignal;
  /** How often finished sub-ranges are reported (and the lease extended). Default: a third of the lease, at most 30 s. */
  heartbeatMs?: number;
  /** Stop after this many items (tests, `--items`). */
  maxItems?: number;
  /** Give up when the tracker says "later" and `exitWhenIdle` is set, instead of waiting. */
  exitWhenDone?: boolean;
  onProgress?: (stats: CrawlStats) => void;
  client?: TrackerClient;
  /** Claim only this kind of item (`--only posts|media`); default either, post items first. */
  only?: ItemKind;
  /** First wait after the item's last media report, an upload or `done` failed for a passing reason; doubles up to 10 min. Default 15 s. */
  uploadRetryBaseMs?: number;
  /** `--max-disk`, `--max-hours` (issue 14): checked before each claim and, for the disk, during an item. */
  caps?: NodeCaps;
}
