import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BandwidthCap } from '../crawler/fetch/bandwidth-cap.js';
import { HttpCapturer } from '../crawler/fetch/http-capture.js';
import type { Capture } from '../storage/warc/capture.js';

/** Issue 14: `--max-bandwidth`, one budget over every body read of a crawl part. */

describe('BandwidthCap (virtual clock)', () => {
  it('lets a burst of burstMs worth through, then paces to the cap', () => {
    let t = 0;
    const cap = new BandwidthCap({ bytesPerSec: 1000, burstMs: 1000, now: () => t });
    expect(cap.take(1000)).toBe(0); // the burst
    expect(cap.take(500)).toBe(500); // half a second ahead of the budget
    expect(cap.take(500)).toBe(1000);
    t = 1000;
    expect(cap.take(0)).toBe(0);
    expect(cap.take(1000)).toBe(1000);
    expect(cap.chargedBytes).toBe(3000);
  });

  it('over a long run at full speed, what passes is cap × time + one burst', () => {
    let t = 0;
    const cap = new BandwidthCap({ bytesPerSec: 10_000, now: () => t });
    let passed = 0;
    // A reader that reads 4 KiB, then sleeps as told (or 1 ms), for 60 virtual seconds.
    while (t < 60_000) {
      passed += 4096;
      t += Math.max(1, cap.take(4096));
    }
    expect(passed).toBeGreaterThanOrEqual(10_000 * 60);
    expect(passed).toBeLessThanOrEqual(10_000 * 61 + 4096);
  });

  it('refuses a cap that is not a positive number', () => {
    expect(() => new BandwidthCap({ bytesPerSec: 0 })).toThrow(/positive/);
    expect(() => new BandwidthCap({ bytesPerSec: Number.NaN })).toThrow(/positive/);
  });
});

describe('HttpCapturer with a bandwidth cap (local server)', () => {
  const BODY = Buffer.alloc(3 * 1024 * 1024 + 17, 7).map((_, i) => (i * 31) & 0xff);
  const digest = createHash('sha1').update(BODY).digest('hex');
  let url: string;
  let tmp: string;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BODY.length) });
    res.end(BODY);
  });
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-bw-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(tmp, { recursive: true, force: true });
  });

  const bodyOf = (c: Capture) => (c.body.kind === 'file' ? readFileSync(c.body.path) : c.body.data);

  it('three concurrent 3 MiB bodies at 2 MiB/s take about 4 s and arrive intact (behaviour check, generous bounds)', async () => {
    const cap = new BandwidthCap({ bytesPerSec: 2 * 1024 * 1024 });
    const capturer = new HttpCapturer({ userAgent: 't', spoolDir: tmp, connectTimeoutMs: 5000, headersTimeoutMs: 5000, idleTimeoutMs: 10_000, totalTimeoutMs: 60_000, maxBodyBytes: 1 << 30, bandwidthCap: cap });
    try {
      const t0 = performance.now();
      const captures = await Promise.all([1, 2, 3].map((i) => capturer.fetch({ url: `${url}/f${i}` })));
      const secs = (performance.now() - t0) / 1000;
      for (const c of captures) expect(createHash('sha1').update(bodyOf(c)).digest('hex')).toBe(digest);
      expect(cap.chargedBytes).toBe(3 * BODY.length);
      // 9 MiB less the 2 MiB burst at 2 MiB/s is 3.5 s; the cap can only make it slower than that.
      const bytesPerSec = (3 * BODY.length) / secs;
      expect(secs).toBeGreaterThan(3.2);
      expect(bytesPerSec).toBeLessThan(2 * 1024 * 1024 * 1.35);
      expect(bytesPerSec).toBeGreaterThan(2 * 1024 * 1024 * 0.3);
    } finally {
      await capturer.close();
    }
  });
});
