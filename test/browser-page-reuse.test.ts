/**
 * Issue 17: the pool reuses one page per context across captures. What the previous page still
 * sends once its capture ended (here a beacon on `pagehide`, which outlives the page) must never
 * be recorded as part of the next capture. Skipped without Chromium, like browser-capture.test.ts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BrowserPool } from '../crawler/browser/browser-pool.js';
import { capturePage, type BrowserCaptureResult } from '../crawler/browser/browser-capture.js';
import { CHROMIUM, describeWithChromium } from './fixtures/environment.js';

const describeBrowser = describeWithChromium('browser-page-reuse');

describeBrowser('browser capture: one page reused across captures', () => {
  let server: Server;
  let base: string;
  const hits: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(req.url ?? '');
      const html = (body: string): void => {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(`<!doctype html><title>t</title>${body}`);
      };
      if (req.url === '/a') return html(`<p>a</p><script>addEventListener('pagehide', () => navigator.sendBeacon('/beacon-a', 'bye'));</script>`);
      if (req.url === '/b') return html('<p>b</p>');
      if (req.url === '/c') return html(`<p>c</p><script>navigator.sendBeacon('/beacon-c', 'hello');</script>`);
      if (req.url === '/beacon-c') {
        req.resume();
        res.writeHead(204).end();
        return;
      }
      if (req.url === '/beacon-a') {
        // Answered while the next capture is still waiting for quiet.
        req.resume();
        setTimeout(() => res.writeHead(204).end(), 300);
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
  });

  it("the previous page's late requests are scope-checked but not recorded in the next capture", async () => {
    const pool = new BrowserPool({ executablePath: CHROMIUM, contexts: 1 });
    const checked: string[] = [];
    const pages: Page[] = [];
    const capture = (path: string, idleMs: number): Promise<BrowserCaptureResult> =>
      pool.withPage(
        (page, context) => {
          pages.push(page);
          return capturePage(page, context, {
            url: `${base}${path}`,
            allowRequest: async (u) => {
              checked.push(new URL(u).pathname);
              return undefined;
            },
            idleMs,
            navigationTimeoutMs: 10_000,
            maxBodyBytes: 1 << 20,
          });
        },
        { timeoutMs: 20_000 },
      );
    try {
      const a = await capture('/a', 100);
      // Long enough a quiet window that the beacon's answer (300 ms) lands inside capture b.
      const b = await capture('/b', 1500);
      expect(pages[0]).toBe(pages[1]); // the same page served both
      expect(a.captures.map((c) => new URL(c.url).pathname)).toContain('/a');
      expect(hits).toContain('/beacon-a'); // the straggler really went out, during or after a's end
      expect(checked).toContain('/beacon-a'); // and was checked against scope like any request
      const bPaths = b.captures.map((c) => new URL(c.url).pathname);
      expect(bPaths).toContain('/b');
      expect(bPaths).not.toContain('/beacon-a');
      expect(a.captures.map((c) => new URL(c.url).pathname)).not.toContain('/b');
    } finally {
      await pool.close();
    }
  }, 60_000);

  it("records the page's own beacons (a ping is dropped only when another page sent it)", async () => {
    const pool = new BrowserPool({ executablePath: CHROMIUM, contexts: 1 });
    try {
      const c = await pool.withPage(
        (page, context) => capturePage(page, context, { url: `${base}/c`, allowRequest: async () => undefined, idleMs: 300, navigationTimeoutMs: 10_000, maxBodyBytes: 1 << 20 }),
        { timeoutMs: 20_000 },
      );
      expect(c.captures.map((x) => new URL(x.url).pathname)).toEqual(expect.arrayContaining(['/c', '/beacon-c']));
    } finally {
      await pool.close();
    }
  }, 60_000);
});
