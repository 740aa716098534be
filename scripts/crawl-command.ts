import { resolve } from 'node:path';
import { cliLogger, gracefulInterrupt, progressReporter, type CliIo } from './cli-io.js';
import { EXIT, nodeName } from './cli-options.js';

export interface CrawlCommandOptions {
  profile: string;
  ids: string;
  out: string;
  concurrency?: number;
  workers?: number;
  rate?: number;
  baseUrl?: string;
  allowPrivateNetwork?: boolean;
  warcSize?: number;
  quiet?: boolean;
  json?: boolean;
  node?: string;
  contact?: string;
  browserConcurrency?: number;
  chromium?: string;
  screenshots?: boolean;
}

/** `lifeboat crawl`: returns the exit code. */
export async function crawlCommand(o: CrawlCommandOptions, io: CliIo): Promise<number> {
  // Loaded on use: `lifeboat --help` should not pay for the crawler's dependencies.
  const [{ loadProfile }, { runCrawl }, { summaryLine }, { discoverMaxId }, { createCodec }, { parseRanges }, { formatFailureReasons, shardFailureReasons }, { checkCrawlScope }] = await Promise.all([
    import('../config/profile.js'),
    import('../crawler/crawl.js'),
    import('../crawler/crawl-stats.js'),
    import('../crawler/discover.js'),
    import('../config/id-codec.js'),
    import('../config/id-ranges.js'),
    import('../storage/status.js'),
    import('../crawler/scope-preflight.js'),
  ]);
  const logger = cliLogger(io, { json: !!o.json, quiet: !!o.quiet });
  const profile = loadProfile(o.profile, o.baseUrl ? { baseUrl: o.baseUrl } : {});
  const codec = createCodec(profile.codec);
  let idsText = o.ids;
  if (/latest/.test(idsText)) {
    // runCrawl refuses an unreachable scope too; here it comes before the discovery request.
    await checkCrawlScope(profile, { allowPrivateNetwork: !!o.allowPrivateNetwork });
    const max = await discoverMaxId(profile, { allowPrivateNetwork: !!o.allowPrivateNetwork });
    idsText = idsText.replace(/latest/g, codec.encode(max));
    logger.log('info', `the platform's latest ID is ${codec.encode(max)}`);
  }
  const ranges = parseRanges(idsText, codec);
  const interrupt = gracefulInterrupt(io, 'finishing the IDs in flight');
  const outDir = resolve(o.out);
  try {
    const result = await runCrawl({
      profile,
      ranges,
      outDir,
      node: nodeName(o.node),
      logger,
      allowPrivateNetwork: !!o.allowPrivateNetwork,
      ...(o.concurrency ? { concurrency: o.concurrency } : {}),
      ...(o.workers ? { workers: o.workers } : {}),
      ...(o.rate ? { ratePerSec: o.rate } : {}),
      ...(o.warcSize ? { warcSizeBytes: o.warcSize } : {}),
      ...(o.contact ? { contact: o.contact } : {}),
      ...(o.browserConcurrency ? { browserConcurrency: o.browserConcurrency } : {}),
      ...((o.chromium ?? io.env.LIFEBOAT_CHROMIUM) ? { chromiumPath: (o.chromium ?? io.env.LIFEBOAT_CHROMIUM)! } : {}),
      ...(o.screenshots ? { screenshots: true } : {}),
      signal: interrupt.signal,
      onProgress: progressReporter(io, { json: !!o.json, quiet: !!o.quiet, signal: interrupt.signal }),
    });
    const s = result.stats.snapshot();
    const thisRun = { ids: s.done!, records: s.records!, bytes: s.bytes!, warcs: s.warcs! };
    const reasons = result.counts.failed > 0 ? shardFailureReasons(outDir) : [];
    if (io.stderr.isTTY && !o.quiet && !o.json) io.stderr.write('\n');
    if (o.json) {
      const summary = { ...result.counts, records: thisRun.records, bytes: thisRun.bytes, warcs: thisRun.warcs };
      io.stdout.write(`${JSON.stringify({ summary, shard: result.counts, this_run: thisRun, failure_reasons: reasons, run: s, interrupted: result.aborted })}\n`);
    } else {
      io.stdout.write(`${summaryLine(result.counts, thisRun)}\n`);
      if (reasons.length > 0) io.stderr.write(`failed IDs by reason (the shard's, most common first):\n${formatFailureReasons(reasons).join('\n')}\n`);
    }
    if (s.extraction_notes && !o.json) io.stderr.write(`note: ${s.extraction_notes} IDs were archived with extraction cut short or failed (their reason: lifeboat status)\n`);
    if (result.aborted) {
      io.stderr.write(`interrupted: run the same command again to resume\n`);
      return EXIT.error;
    }
    return result.counts.failed > 0 ? EXIT.failedIds : EXIT.ok;
  } finally {
    interrupt.dispose();
  }
}
