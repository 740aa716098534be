import { resolve } from 'node:path';
import { cliLogger, gracefulInterrupt, progressReporter, type CliIo } from './cli-io.js';
import { EXIT } from './cli-options.js';
import { capsFrom, crawlFlagsFrom, type CrawlFlagValues } from './crawl-flags.js';

export interface CrawlCommandOptions extends CrawlFlagValues {
  profile: string;
  ids: string;
  out: string;
}

/** `lifeboat crawl`: returns the exit code. */
export async function crawlCommand(o: CrawlCommandOptions, io: CliIo): Promise<number> {
  // Loaded on use: `lifeboat --help` should not pay for the crawler's dependencies.
  const [{ loadProfile }, { runCrawl }, { summaryLine }, { discoverMaxId }, { createCodec }, { parseRanges, RangeSet }, { formatFailureReasons, leftIds, shardFailureReasons, shardIncompleteReasons, shardLeft }, { checkCrawlScope }, { followIds, shardFollowAges }] = await Promise.all([
    import('../../config/profile.js'),
    import('../../crawler/run/crawl.js'),
    import('../../crawler/fetch/crawl-stats.js'),
    import('../../crawler/run/discover.js'),
    import('../../config/id-codec.js'),
    import('../../config/id-ranges.js'),
    import('../../storage/curate/status.js'),
    import('../../crawler/fetch/scope-preflight.js'),
    import('../../crawler/run/follow-ids.js'),
  ]);
  const untilMs = o.until === undefined ? undefined : Date.parse(o.until);
  if (untilMs !== undefined && !(/^\d{4}-\d\d-\d\dT/.test(o.until!) && Number.isFinite(untilMs))) {
    io.stderr.write(`error: --until ${o.until}: use an RFC 3339 time such as 2026-12-01T18:00:00Z\n`);
    return EXIT.usage;
  }
  if (o.follow && !/latest/.test(o.ids)) {
    io.stderr.write(`error: --follow needs an ID range ending in latest (e.g. --ids 1-latest)\n`);
    return EXIT.usage;
  }
  // The live edge's settings do nothing without --follow: say so rather than ignore them.
  const followOnly = ([['--follow-secs', o.followSecs], ['--follow-max-step', o.followMaxStep], ['--follow-confirm-secs', o.followConfirmSecs], ['--recheck-window', o.recheckWindow], ['--recheck-attempts', o.recheckAttempts], ['--recheck-delay-secs', o.recheckDelaySecs], ['--recheck-age-secs', o.recheckAgeSecs]] as const).filter(([, v]) => v !== undefined);
  if (!o.follow && followOnly.length > 0) {
    io.stderr.write(`error: ${followOnly.map(([flag]) => flag).join(', ')} only ${followOnly.length === 1 ? 'applies' : 'apply'} with --follow (e.g. --ids 1-latest --follow)\n`);
    return EXIT.usage;
  }
  if (o.recheck !== undefined && o.recheck !== 'missing') {
    io.stderr.write(`error: --recheck ${o.recheck}: only "missing" can be asked again (e.g. --recheck missing)\n`);
    return EXIT.usage;
  }
  const logger = cliLogger(io, { json: !!o.json, quiet: !!o.quiet });
  const profile = loadProfile(o.profile, o.baseUrl ? { baseUrl: o.baseUrl } : {});
  const codec = createCodec(profile.codec);
  let idsText = o.ids;
  let latest = 0;
  if (/latest/.test(idsText)) {
    // runCrawl refuses an unreachable scope too; here it comes before the discovery request.
    await checkCrawlScope(profile, { allowPrivateNetwork: !!o.allowPrivateNetwork });
    const max = await discoverMaxId(profile, { allowPrivateNetwork: !!o.allowPrivateNetwork });
    latest = max;
    idsText = idsText.replace(/latest/g, codec.encode(max));
    logger.log('info', `the platform's latest ID is ${codec.encode(max)}`);
  }
  const ranges = parseRanges(idsText, codec);
  const interrupt = gracefulInterrupt(io, 'finishing the IDs in flight');
  const outDir = resolve(o.out);
  // --until, --max-hours and --max-disk end the run like Ctrl-C does (what is in flight is finished), with their own reason.
  const limits = new AbortController();
  let limitReason: string | undefined;
  const stopFor = (reason: string) => {
    if (limits.signal.aborted) return;
    limitReason = reason;
    logger.log('info', `${reason}: finishing the IDs in flight`);
    limits.abort(new Error(reason));
  };
  const caps = await capsFrom(o, outDir, logger);
  await caps?.itemStarted(outDir);
  if (o.maxDisk !== undefined && (await caps!.diskFull())) stopFor(`--max-disk ${o.maxDisk} bytes reached before the start`);
  const limitTimer = setInterval(() => {
    if (untilMs !== undefined && Date.now() >= untilMs) stopFor(`--until ${o.until} reached`);
    if (caps?.timeIsUp()) stopFor(`--max-hours ${o.maxHours} reached`);
    void caps?.diskFull().then((full) => full && stopFor(`--max-disk ${o.maxDisk} bytes reached`), () => undefined);
  }, 250);
  const signal = AbortSignal.any([interrupt.signal, limits.signal]);
  let result: Awaited<ReturnType<typeof runCrawl>> | undefined;
  const thisRun = { ids: 0, records: 0, bytes: 0, warcs: 0 };
  type Ids = InstanceType<typeof RangeSet>;
  const crawlIds = async (ids: Ids, live: { recheck?: Ids; watch?: Ids } = {}) => {
    result = await runCrawl({
      profile,
      ranges: ids,
      outDir,
      ...crawlFlagsFrom(o, io.env),
      logger,
      ...(live.recheck ? { recheckMissing: live.recheck } : {}),
      ...(live.watch ? { watchMissing: live.watch } : {}),
      signal,
      onProgress: progressReporter(io, { json: !!o.json, quiet: !!o.quiet, signal, ...(caps ? { caps: () => caps.describe() } : {}) }),
    });
    const r = result.stats.snapshot();
    thisRun.ids += r.done!;
    thisRun.records += r.records!;
    thisRun.bytes += r.bytes!;
    thisRun.warcs += r.warcs!;
    return { aborted: result.aborted, missing: result.missing };
  };
  try {
    if (o.follow) {
      const everyMs = (o.followSecs ?? 60) * 1000;
      const discover = () => discoverMaxId(profile, { allowPrivateNetwork: !!o.allowPrivateNetwork });
      const recheck = {
        ...(o.recheckWindow !== undefined ? { window: o.recheckWindow } : {}),
        ...(o.recheckAttempts !== undefined ? { attempts: o.recheckAttempts } : {}),
        ...(o.recheckDelaySecs !== undefined ? { delayMs: o.recheckDelaySecs * 1000 } : {}),
        ...(o.recheckAgeSecs !== undefined ? { ageMs: o.recheckAgeSecs * 1000 } : {}),
      };
      const f = await followIds({
        first: ranges,
        highest: latest,
        discover,
        crawl: crawlIds,
        ...(o.recheck ? { firstRecheck: ranges } : {}),
        everyMs,
        signal,
        logger,
        recheck,
        ages: shardFollowAges(outDir),
        ...(o.followMaxStep !== undefined ? { maxStep: o.followMaxStep } : {}),
        ...(o.followConfirmSecs !== undefined ? { confirmMs: o.followConfirmSecs * 1000 } : {}),
      });
      logger.log('info', `followed the platform to ID ${codec.encode(f.highest)} in ${f.rounds} rounds${f.rechecked ? `; ${f.rechecked} rechecks of IDs that answered missing` : ''}`);
      if (f.pendingRechecks > 0) logger.log('info', `${f.pendingRechecks} IDs near the live edge still answer missing and were not asked again yet: to ask for them again, run the same command with --recheck missing`);
      // A follow that ran to its --until/--max-* or was stopped between rounds still needs a summary.
      if (!result) await crawlIds(new RangeSet());
    } else {
      await crawlIds(ranges, o.recheck ? { recheck: ranges } : {});
    }
    if (!result) throw new Error('no crawl ran');
    const s = result.stats.snapshot();
    const reasons = result.counts.failed > 0 ? shardFailureReasons(outDir) : [];
    // Every requested ID that is not final (never attempted + to retry + incomplete), as `status` counts it.
    const left = shardLeft(outDir) ?? { ids: 0, neverAttempted: 0, idsToRetry: 0, incomplete: 0 };
    if (io.stderr.isTTY && !o.quiet && !o.json) io.stderr.write('\n');
    if (o.json) {
      const summary = { ...result.counts, records: thisRun.records, bytes: thisRun.bytes, warcs: thisRun.warcs };
      io.stdout.write(`${JSON.stringify({ summary, shard: result.counts, incomplete: result.incomplete, this_run: thisRun, left: { ids: left.ids, never_attempted: left.neverAttempted, to_retry: left.idsToRetry, incomplete: left.incomplete }, failure_reasons: reasons, run: s, interrupted: result.aborted })}\n`);
    } else {
      io.stdout.write(`${summaryLine(result.counts, thisRun)}\n`);
      if (left.ids > 0) io.stdout.write(`left: ${leftIds(left)}\n`);
      if (reasons.length > 0) io.stderr.write(`failed IDs by reason (the shard's, most common first):\n${formatFailureReasons(reasons).join('\n')}\n`);
    }
    if (result.incomplete > 0) {
      const inc = shardIncompleteReasons(outDir, 3);
      io.stderr.write(`incomplete: ${result.incomplete} IDs miss a capture (run the same command again to retry them; lifeboat status lists them)${o.json ? '' : `:\n${formatFailureReasons(inc.reasons).join('\n')}`}\n`);
    }
    if (s.extraction_notes && !o.json) io.stderr.write(`note: ${s.extraction_notes} IDs were archived with extraction cut short or failed (their reason: lifeboat status)\n`);
    if (interrupt.signal.aborted) {
      io.stderr.write(`interrupted: run the same command again to resume\n`);
      return EXIT.error;
    }
    // Stopped where the user said to: a planned end, not an error.
    if (limitReason) io.stderr.write(`stopped: ${limitReason}; run the same command again to go on\n`);
    return result.counts.failed > 0 || result.incomplete > 0 ? EXIT.failedIds : EXIT.ok;
  } finally {
    clearInterval(limitTimer);
    interrupt.dispose();
  }
}
