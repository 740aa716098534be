import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CHROMIUM_ARGS } from '../crawler/browser/browser-pool.js';
import { cli, crawl, readShard } from './fixtures/crawl-run.js';
import { CHROMIUM, chromiumMissingReason, requireAll } from './fixtures/environment.js';
import { describeWithMediaWiki, mediawikiMissingReason, png, startMediaWiki, uploadImages, type Wiki } from './fixtures/mediawiki.js';
import { replayFrame, serveReplay } from './fixtures/replay-web-page.js';

/**
 * The `mediawiki` built-in against real MediaWiki (Debian's package, its installer and maintenance
 * scripts, PHP's built-in server): every revision ID crawled; live revisions archived with their
 * API JSON, their oldid page, its stylesheets/scripts and the images they reference; deleted and
 * never-used revision IDs missing; the WARCs verified; a revision's page replays styled, with its
 * images, from the exported WACZ in ReplayWeb.page (Chromium; skipped with the reason without it).
 */
const reason = await mediawikiMissingReason();
if (!reason && chromiumMissingReason && !requireAll) console.warn(`MediaWiki replay test skipped: ${chromiumMissingReason}`);

interface Revisions {
  all: number[];
  live: Set<number>;
  deleted: Set<number>;
  max: number;
}

async function allRevisionIds(wiki: Wiki): Promise<number[]> {
  const r = (await wiki.api({ action: 'query', list: 'allrevisions', arvprop: 'ids', arvlimit: 'max' })) as { query: { allrevisions: { revisions: { revid: number }[] }[] } };
  return r.query.allrevisions.flatMap((p) => p.revisions.map((x) => x.revid)).sort((a, b) => a - b);
}

describeWithMediaWiki(reason, 'MediaWiki')('mediawiki built-in against a real MediaWiki', () => {
  let tmp: string;
  let wiki: Wiki;
  let revs: Revisions;
  let images: string[];

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-mediawiki-'));
    wiki = await startMediaWiki(join(tmp, 'wiki'));
    await uploadImages(wiki, join(tmp, 'upload'), {
      'Red_square.png': png(40, 30, [200, 30, 30]),
      'Green_box.png': png(30, 40, [30, 200, 30]),
      'Blue_bar.png': png(60, 10, [30, 30, 200]),
    });
    await wiki.edit('Alpha', 'First version of Alpha with [[File:Red_square.png]].', 'first');
    await wiki.edit('Beta', 'A page that will be deleted, showing [[File:Blue_bar.png]].', 'beta 1');
    await wiki.edit('Alpha', 'Second version: [[File:Red_square.png]] and [[File:Green_box.png|thumb|A green box]].', 'second');
    await wiki.edit('Beta', 'Beta, second revision.', 'beta 2');
    await wiki.edit('Gamma', "Gamma links to [[Alpha]] and shows [[File:Blue_bar.png|frame|A blue bar]].", 'gamma 1');
    await wiki.edit('Alpha', 'Third version of Alpha, images gone.', 'third');
    await wiki.edit('Gamma', 'Gamma, second revision with [[File:Green_box.png]].', 'gamma 2');
    const before = await allRevisionIds(wiki);
    await writeFile(join(tmp, 'delete.txt'), 'Beta\n');
    await wiki.maintenance('deleteBatch.php', ['-u', 'Admin', '-r', 'lifeboat test deletion', join(tmp, 'delete.txt')]);
    const after = new Set(await allRevisionIds(wiki));
    revs = { all: before, live: after, deleted: new Set(before.filter((r) => !after.has(r))), max: Math.max(...before) };
    const files = (await wiki.api({ action: 'query', list: 'allimages', aiprop: 'url', ailimit: 'max' })) as { query: { allimages: { url: string }[] } };
    images = files.query.allimages.map((i) => i.url);
  }, 120_000);

  afterAll(async () => {
    await wiki?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('the wiki is what the test meant: several revisions per page, a deleted page, uploaded images', () => {
    expect(revs.deleted.size).toBe(2);
    expect(revs.live.size).toBeGreaterThanOrEqual(9);
    expect(images).toHaveLength(3);
  });

  it('crawls every revision ID: live ones archived with JSON, page, requisites and images; deleted and unused ones missing', async () => {
    const dir = join(tmp, 'shard');
    const last = revs.max + 3;
    const r = await crawl(['--profile', 'mediawiki', '--base-url', wiki.url, '--ids', `1-${last}`, '--out', dir, '--rate', '200']);
    expect(r.code, r.stderr).toBe(0);
    const s = await readShard(dir);
    for (let id = 1; id <= last; id++) {
      const live = revs.live.has(id);
      expect(s.status.get(id), `revision ${id}${revs.deleted.has(id) ? ' (deleted)' : live ? '' : ' (never used)'}`).toBe(live ? 'archived' : 'missing');
      const json = [...s.bodies.entries()].find(([u]) => u.includes('action=query') && u.includes(`revids=${id}&rvprop`));
      expect(json, `revision ${id}: its API JSON`).toBeDefined();
      const page = `${wiki.url}/index.php?oldid=${id}`;
      expect(s.archived.has(page), `revision ${id}: its page`).toBe(live);
      if (live) {
        expect(JSON.parse(json![1].toString()).query.pages[0].revisions[0].revid).toBe(id);
        expect(s.bodies.get(page)?.toString()).toContain(`oldid=${id}`);
      } else {
        expect(JSON.parse(json![1].toString()).query.badrevids[String(id)]).toMatchObject({ revid: id, missing: true });
      }
    }
    for (const img of images) expect(s.archived.has(img), `image ${img}`).toBe(true);
    // The oldid pages replay styled: their stylesheet, startup script and what the CSS references were fetched.
    const archived = [...s.archived];
    expect(archived.some((u) => u.includes('/load.php?') && u.includes('only=styles')), 'a load.php stylesheet').toBe(true);
    expect(archived.some((u) => u.includes('/load.php?') && u.includes('only=scripts')), 'the load.php startup script').toBe(true);
    expect(archived.some((u) => /\/skins\/Vector\/.*\.svg/.test(u)), 'an image the skin’s CSS references').toBe(true);
    expect(archived.some((u) => u.includes('poweredby_mediawiki')), 'the footer image').toBe(true);
    // Each requisite once, however many pages share it.
    expect([...s.urls.keys()].filter((u) => u.includes('only=styles')).length).toBeLessThanOrEqual(3);
    const v = await cli(['verify', dir]);
    expect(v.code, `${v.stdout}${v.stderr}`).toBe(0);
  }, 300_000);

  it('--ids 1-latest discovers the newest live revision', async () => {
    const dir = join(tmp, 'latest');
    const r = await crawl(['--profile', 'mediawiki', '--base-url', wiki.url, '--ids', '1-latest', '--out', dir, '--rate', '200']);
    expect(r.code, r.stderr).toBe(0);
    const s = await readShard(dir);
    expect(Math.max(...s.status.keys())).toBe(Math.max(...revs.live));
    expect([...s.status.values()].filter((x) => x === 'archived').length).toBe([...revs.live].length);
  }, 300_000);

  it.skipIf(chromiumMissingReason !== undefined && !requireAll)('a revision page replays from the WACZ, styled by its archived stylesheet, with its images', async () => {
    const wacz = join(tmp, 'wiki.wacz');
    const x = await cli(['export', join(tmp, 'shard'), '--wacz', wacz]);
    expect(x.code, x.stderr).toBe(0);
    await wiki.close(); // from here on, the page can only come from the WACZ
    const alpha = (await readShard(join(tmp, 'shard'))).fields;
    const rev = [...alpha.entries()].find(([, f]) => f.title === 'Alpha' && String(f.comment) === 'second')![0];
    const pageUrl = `${wiki.url}/index.php?oldid=${rev}`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'] });
    const served = await serveReplay({ wacz, pageUrl });
    const offsite: string[] = [];
    try {
      const context = await browser.newContext();
      await context.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith(`${served.url}/`)) return route.continue();
        offsite.push(url);
        return route.abort('blockedbyclient');
      });
      const page = await context.newPage();
      await page.goto(served.url);
      await expect.poll(() => replayFrame(page, pageUrl)?.url(), { timeout: 90_000, interval: 500 }).toBeDefined();
      const frame = replayFrame(page, pageUrl)!;
      await frame.locator('#content').waitFor({ timeout: 30_000 });
      // Vector's stylesheet (load.php?only=styles) sets the content box beside the sidebar; unstyled it starts at 0.
      await expect.poll(() => frame.evaluate(() => getComputedStyle(document.querySelector('#content')!).marginLeft), { timeout: 30_000 }).not.toBe('0px');
      const imgs = () => frame.evaluate(() => [...document.querySelectorAll('#mw-content-text img')].map((i) => (i as HTMLImageElement).naturalWidth));
      await expect.poll(imgs, { timeout: 30_000 }).toEqual([40, 30]);
      expect(await frame.title()).toBe('Alpha - Lifeboat Test Wiki');
      expect(offsite).toEqual([]);
    } finally {
      await served.close();
      await browser.close();
    }
  }, 300_000);
});
