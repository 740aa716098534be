/**
 * The exported WACZ replays in ReplayWeb.page (issue 4): crawl the demo platform, merge, export,
 * stop the platform, then open ReplayWeb.page's embed (the `replaywebpage` npm package, served
 * from 127.0.0.1 with the WACZ) in real Chromium and read an archived post's text inside the
 * replay. Nothing leaves 127.0.0.1: the browser's resolver maps every other host to nowhere and
 * any request to another origin is aborted and counted. Without Chromium the test is skipped
 * with the reason shown, unless LIFEBOAT_REQUIRE_ALL=1 (CI), where that is a failure.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Frame } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { CHROMIUM_ARGS } from '../crawler/browser/browser-pool.js';
import { CHROMIUM, describeWithChromium } from './fixtures/environment.js';
import { replayFrame, serveReplay } from './fixtures/replay-web-page.js';
import { startDemoPlatform } from '../scripts/demo/demo-platform.js';
import { mergeShards } from '../storage/curate/merge.js';
import { exportWacz } from '../storage/export/wacz.js';

const describeBrowser = describeWithChromium('wacz-replay');

describeBrowser('the exported WACZ in ReplayWeb.page (real Chromium)', () => {
  let tmp: string;
  let browser: Browser;
  let platformUrl: string;
  /** Public posts, their text and the sha256 of their avatar's bytes as the platform served them. */
  const posts: { id: number; text: string; avatarUrl: string; avatarSha256: string }[] = [];

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-wacz-replay-'));
    const platform = await startDemoPlatform({ posts: 30 });
    platformUrl = platform.url;
    try {
      const err: string[] = [];
      const io = { stdout: { write: () => true }, stderr: { write: (s: string) => err.push(s) }, env: {} };
      const code = await main(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-30', '--out', join(tmp, 'shard'), '--allow-private-network', '--quiet'], io);
      expect(code, err.join('')).toBe(0);
      for (let id = 1; id <= 30; id++) {
        const p = platform.post(id);
        if (p.status !== 'public') continue;
        const json = p.json as { text: string; author: { avatar_url: string } };
        const avatarUrl = new URL(json.author.avatar_url, platform.url).href;
        const avatarSha256 = createHash('sha256').update(platform.mediaBody(new URL(avatarUrl).pathname)!).digest('hex');
        posts.push({ id, text: json.text, avatarUrl, avatarSha256 });
      }
    } finally {
      // From here on the text can only come from the WACZ.
      await platform.close();
    }
    // Small merged WARCs, so the WACZ holds several and replay has to pick the right one.
    await mergeShards({ inputs: [join(tmp, 'shard')], out: join(tmp, 'merged'), maxWarcBytes: 400_000 });
    await exportWacz({ dir: join(tmp, 'merged'), file: join(tmp, 'plain.wacz') });
    await exportWacz({ dir: join(tmp, 'merged'), file: join(tmp, 'blocks.wacz'), compressIndexAboveBytes: 0, linesPerBlock: 10 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        ...CHROMIUM_ARGS,
        // Belt and braces with the route below: no name resolves, so no CDN can be reached.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      ],
    });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  /** Opens the embed on `pageUrl` in a fresh origin (so no service-worker state carries over); runs `check` on the replayed page's frame. */
  async function inReplay(wacz: string, pageUrl: string, check: (frame: Frame) => Promise<void>): Promise<void> {
    const served = await serveReplay({ wacz, pageUrl });
    const context = await browser.newContext();
    const offsite: string[] = [];
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(`${served.url}/`)) return route.continue();
      offsite.push(url);
      return route.abort('blockedbyclient');
    });
    const page = await context.newPage();
    const log: string[] = [];
    page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    try {
      await page.goto(served.url);
      await expect.poll(() => replayFrame(page, pageUrl)?.url(), { timeout: 90_000, interval: 500 }).toBeDefined();
      await check(replayFrame(page, pageUrl)!);
      expect(offsite).toEqual([]);
    } catch (e) {
      // What the browser saw, for whoever reads a failure.
      console.log(`frames:\n${page.frames().map((f) => f.url()).join('\n')}\nconsole:\n${log.join('\n')}\nrequests:\n${served.hits.join('\n')}`);
      throw e;
    } finally {
      await context.close();
      await served.close();
    }
  }

  /** The post's text is on the page, and its avatar comes back byte for byte, fetched as the replayed page sees it. */
  async function expectPost(frame: Frame, post: (typeof posts)[number]): Promise<void> {
    await frame.locator('p.text').waitFor({ timeout: 30_000 });
    expect(await frame.locator('p.text').textContent()).toBe(post.text);
    const src = await frame.locator('img.avatar').evaluate((img: HTMLImageElement) => img.src);
    expect(src.endsWith(post.avatarUrl), src).toBe(true);
    const avatarSha256 = await frame.evaluate(async (u) => {
      const body = await (await fetch(u)).arrayBuffer();
      return [...new Uint8Array(await crypto.subtle.digest('SHA-256', body))].map((b) => b.toString(16).padStart(2, '0')).join('');
    }, src);
    expect(avatarSha256).toBe(post.avatarSha256);
  }

  it('shows an archived post page, text and avatar, from the WACZ alone', async () => {
    const post = posts[0]!;
    await inReplay(join(tmp, 'plain.wacz'), `${platformUrl}/p/${post.id}`, (frame) => expectPost(frame, post));
  }, 180_000);

  it("feeds each post's text to ReplayWeb.page's page search (its text index is our pages.jsonl)", async () => {
    const post = posts[1]!;
    const apiCalls: string[] = [];
    await inReplay(join(tmp, 'plain.wacz'), `${platformUrl}/p/${post.id}`, async (frame) => {
      const page = frame.page();
      for (const f of page.frames()) apiCalls.push(...(await f.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name)).catch(() => [] as string[])));
      const api = apiCalls.map((u) => /^(.*\/api\/c\/[^/?]+)/.exec(u)?.[1]).find(Boolean);
      expect(api, apiCalls.join('\n')).toBeDefined();
      // Asked from ReplayWeb.page's own frame (the one its service worker controls), as its Pages search asks.
      const app = page.frames().find((f) => /\/replay\/\?source=/.test(f.url()))!;
      const lines = (await app.evaluate(async (u) => (await fetch(`${u}/textIndex`)).text(), api!)).trimEnd().split('\n');
      const entry = lines.map((l) => JSON.parse(l) as { url?: string; title?: string; text?: string }).find((e) => e.url === `${platformUrl}/p/${post.id}`);
      expect(entry?.text, lines.slice(0, 3).join('\n')).toContain(post.text);
      expect(entry?.title).toMatch(new RegExp(`^Post ${post.id} by `));
    });
  }, 180_000);

  it('reads a WACZ whose index is shipped as index.cdx.gz blocks + index.idx', async () => {
    const post = posts.at(-1)!;
    await inReplay(join(tmp, 'blocks.wacz'), `${platformUrl}/p/${post.id}`, (frame) => expectPost(frame, post));
  }, 180_000);
});
