/**
 * The capture layers of one crawl part, composed (STYLE.md habit 8): scope guard → robots →
 * per-host limiter → undici capture → retries, and the browser pool for `render: browser`.
 */
import { join } from 'node:path';
import type { CrawlPartOptions } from './crawl-part.js';
import { Fetcher } from './fetcher.js';
import { HostLimiter } from './host-limiter.js';
import { HttpCapturer } from './http-capture.js';
import { RobotsPolicy } from './robots.js';
import { robotsFetcher } from './robots-fetch.js';
import { ScopeGuard } from './scope-guard.js';
import { userAgent } from '../config/version.js';

type StackOptions = Pick<
  CrawlPartOptions,
  | 'profile' | 'outDir' | 'allowPrivateNetwork' | 'contact' | 'concurrency' | 'perHostConcurrency' | 'ratePerSec' | 'backoffBaseMs' | 'stats' | 'logger'
  | 'chromiumPath' | 'browserConcurrency' | 'browserPagesPerContext' | 'screenshots'
> & { signal: AbortSignal };

export async function buildFetchStack(opts: StackOptions) {
  const { profile, stats, logger } = opts;
  const pol = profile.politeness;
  const guard = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: opts.allowPrivateNetwork });
  const ua = userAgent(opts.contact);
  const capturer = new HttpCapturer({
    userAgent: ua,
    spoolDir: join(opts.outDir, 'tmp'),
    connector: guard.connector({ timeout: pol.connectTimeoutMs }),
    connectTimeoutMs: pol.connectTimeoutMs,
    headersTimeoutMs: pol.timeoutMs,
    idleTimeoutMs: pol.idleTimeoutMs,
    totalTimeoutMs: pol.totalTimeoutMs,
    maxBodyBytes: pol.maxBodyBytes,
    connections: Math.max(opts.concurrency, opts.perHostConcurrency),
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
  const limiter = new HostLimiter({ ratePerSec: opts.ratePerSec, perHostConcurrency: opts.perHostConcurrency });
  const fetcher = new Fetcher({
    capturer,
    guard,
    robots,
    limiter,
    maxAttempts: pol.maxAttempts,
    maxRedirects: pol.maxRedirects,
    maxOutageMs: pol.maxOutageMs,
    signal: opts.signal,
    ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
    events: {
      onThrottle: () => stats.throttles++,
      onRetry: () => stats.retries++,
    },
  });
  // Only profiles with `render: browser` captures get a browser pool (Chromium starts on first use);
  // playwright-core is loaded only then (loading it cost ~1.5 s of start-up for HTTP-only crawls).
  const browserMods = profile.captures.some((c) => c.render === 'browser')
    ? await Promise.all([import('./browser-pool.js'), import('./browser-fetcher.js'), import('./browser-capture.js')])
    : undefined;
  const browserPool = browserMods
    ? new browserMods[0].BrowserPool({
        ...(opts.chromiumPath ? { executablePath: opts.chromiumPath } : {}),
        contexts: opts.browserConcurrency ?? 2,
        ...(opts.browserPagesPerContext ? { pagesPerContext: opts.browserPagesPerContext } : {}),
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
        screenshots: opts.screenshots ?? false,
        signal: opts.signal,
        ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
        events: { onThrottle: () => stats.throttles++, onRetry: () => stats.retries++ },
      })
    : undefined;
  return { ua, guard, capturer, robots, limiter, fetcher, browserPool, browserFetcher, renderedDomCapture: browserMods?.[2].renderedDomCapture };
}
