import { describe, expect, it } from 'vitest';
import { partSettings, resolveCrawlSettings } from '../config/crawl-settings.js';
import { InputError } from '../config/errors.js';
import { loadProfile } from '../config/profile.js';

// The one settings object of a crawl: flags > profile > defaults, resolved once.

const demo = loadProfile('demo', { baseUrl: 'http://127.0.0.1:1' });

describe('resolveCrawlSettings', () => {
  it('takes the profile where no flag is given, and the defaults written in the schema', () => {
    const s = resolveCrawlSettings(demo, { node: 'n1' });
    expect(s).toMatchObject({
      node: 'n1',
      concurrency: demo.politeness.concurrency,
      ratePerSec: demo.politeness.ratePerSec,
      perHostConcurrency: demo.politeness.perHostConcurrency,
      allowPrivateNetwork: false,
      workers: 1,
      warcSizeBytes: 1024 ** 3,
      commitIntervalMs: 250,
      backoffBaseMs: 250,
      browserConcurrency: 2,
      screenshots: false,
      inlineMedia: 'all',
    });
    expect(s.profile).toBe(demo);
  });

  it('a flag wins over the profile', () => {
    const s = resolveCrawlSettings(demo, { node: 'n1', concurrency: 3, ratePerSec: 7, warcSizeBytes: 5_000_000, backoffBaseMs: 10 });
    expect(s).toMatchObject({ concurrency: 3, ratePerSec: 7, warcSizeBytes: 5_000_000, backoffBaseMs: 10 });
  });

  it('a profile with browser captures crawls on one thread whatever --workers says', () => {
    const browser = loadProfile('demo-browser', { baseUrl: 'http://127.0.0.1:1' });
    expect(resolveCrawlSettings(browser, { node: 'n', workers: 4 }).workers).toBe(1);
    expect(resolveCrawlSettings(demo, { node: 'n', workers: 2 }).workers).toBe(2);
  });

  it('refuses an unknown key naming it (and what was meant), and a bad value naming its key', () => {
    const typo = () => resolveCrawlSettings(demo, { node: 'n', concurency: 4 } as never);
    expect(typo).toThrow(InputError);
    expect(typo).toThrow(/unknown key "concurency" \(did you mean "concurrency"\?\)/);
    expect(() => resolveCrawlSettings(demo, { node: 'n', workers: 0 })).toThrow(/crawl options workers: /);
  });
});

describe('partSettings', () => {
  it('splits the in-flight and per-host limits evenly among workers, at least 1 each', () => {
    const s = resolveCrawlSettings(demo, { node: 'n', concurrency: 5, ratePerSec: 9, maxBandwidthBytesPerSec: 1000 });
    const part = partSettings(s, 2);
    expect(part).toMatchObject({ concurrency: 3, ratePerSec: 4.5, perHostConcurrency: Math.max(1, Math.ceil(demo.politeness.perHostConcurrency / 2)), maxBandwidthBytesPerSec: 500 });
    expect(partSettings(s, 1)).toBe(s);
    expect(partSettings(resolveCrawlSettings(demo, { node: 'n', concurrency: 1 }), 4).concurrency).toBe(1);
  });
});
