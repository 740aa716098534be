/**
 * The capture layers of one crawl part, composed (ARCHITECTURE.md "House rules"): scope guard → robots →
 * per-host limiter → undici capture → retries, and the browser pool for `render: browser`.
 */
import type { CrawlSettings } from '../../config/crawl-settings.js';
import type { Logger } from '../../config/logger.js';
import type { CrawlStats } from '../fetch/crawl-stats.js';
import { Fetcher } from '../fetch/fetcher.js';
import { HostLimiter } from '../fetch/host-limiter.js';
import { HttpCapturer } from '../fetch/http-capture.js';
import { BandwidthCap } from '../fetch/bandwidth-cap.js';
import { RobotsPolicy } from '../fetch/robots.js';
import { robotsFetcher } from '../fetch/robots-fetch.js';
import { ScopeGuard } from '../fetch/scope-guard.js';
import { userAgent } from '../../config/version.js';

export type FetchStack = Awaited<ReturnType<typeof buildFetchStack>>;

/**
 * Builds one part's stack from its settings. The caller owns what it returns and closes it with
 * `closeFetchStack` (the HTTP client's connections, the browser pool).
 */
export async function buildFetchStack(settings: CrawlSettings, o: { spoolDir: string; stats: CrawlStats; logger: Logger; signal: AbortSignal }) {
  const { profile } = settings;
  const { stats, logger } = o;
  const pol = profile.politeness;
  const guard = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: settings.allowPrivateNetwork });
  const ua = userAgent(settings.contact);
  const capturer = new HttpCapturer({
    userAgent: ua,
    spoolDir: o.spoolDir,
    connector: guard.connector({ timeout: pol.connectTimeoutMs }),
    connectTimeoutMs: pol.connectTimeoutMs,
    headersTimeoutMs: pol.timeoutMs,
    idleTimeoutMs: pol.idleTimeoutMs,
    totalTimeoutMs: pol.totalTimeoutMs,
    maxBodyBytes: pol.maxBodyBytes,
    connections: Math.max(settings.concurrency, settings.perHostConcurrency),
    ...(settings.maxBandwidthBytesPerSec ? { bandwidthCap: new BandwidthCap({ bytesPerSec: settings.maxBandwidthBytesPerSec }) } : {}),
  });
  const robots = new RobotsPolicy({
    userAgent: 'lifeboat',
    mode: pol.robots,
    fetchRobots: robotsFetcher(capturer, guard),
    onUnreachable: (origin, reason, retryInMs) =>
      logger.child('robots').log('warn', `${origin}: waiting for robots.txt (${reason}); nothing is fetched from this host until it answers (next try in ${Math.round(retryInMs / 1000)} s)`, { origin }),
    onSlow: (origin, waitedMs) =>
      logger.child('robots').log('warn', `${origin}: waiting for robots.txt (still downloading after ${Math.round(waitedMs / 1000)} s); nothing is fetched from this host until it arrives`, { origin }),
  });
  const limiter = new HostLimiter({ ratePerSec: settings.ratePerSec, perHostConcurrency: settings.perHostConcurrency });
  const events = { onThrottle: () => stats.throttled(), onRetry: () => stats.retried() };
  const fetcher = new Fetcher({
    capturer,
    guard,
    robots,
    limiter,
    maxAttempts: pol.maxAttempts,
    maxRedirects: pol.maxRedirects,
    maxOutageMs: pol.maxOutageMs,
    signal: o.signal,
    backoffBaseMs: settings.backoffBaseMs,
    events,
  });
  // Only profiles with `render: browser` captures get a browser pool (Chromium starts on first use);
  // playwright-core is loaded only then (loading it cost ~1.5 s of start-up for HTTP-only crawls).
  const browserMods = profile.captures.some((c) => c.render === 'browser')
    ? await Promise.all([import('../browser/browser-pool.js'), import('../browser/browser-fetcher.js')])
    : undefined;
  const browserPool = browserMods
    ? new browserMods[0].BrowserPool({
        ...(settings.chromiumPath ? { executablePath: settings.chromiumPath } : {}),
        contexts: settings.browserConcurrency,
        ...(settings.browserPagesPerContext ? { pagesPerContext: settings.browserPagesPerContext } : {}),
        extraArgs: [browserMods[0].hostResolverRules(profile.scopeHosts)],
        userAgentSuffix: ua,
        logger,
      })
    : undefined;
  const browserFetcher = browserMods && browserPool
    ? new browserMods[1].BrowserFetcher({
        pool: browserPool,
        guard,
        robots,
        limiter,
        maxAttempts: pol.maxAttempts,
        pageTimeoutMs: pol.timeoutMs,
        maxBodyBytes: pol.maxBodyBytes,
        screenshots: settings.screenshots,
        signal: o.signal,
        backoffBaseMs: settings.backoffBaseMs,
        maxOutageMs: pol.maxOutageMs,
        events,
      })
    : undefined;
  return { ua, guard, capturer, robots, limiter, fetcher, browserPool, browserFetcher };
}

/** Closes what `buildFetchStack` opened; never throws (the crawl's own outcome matters more). */
export async function closeFetchStack(stack: FetchStack): Promise<void> {
  await stack.capturer.close().catch(() => undefined);
  await stack.browserPool?.close().catch(() => undefined);
}
