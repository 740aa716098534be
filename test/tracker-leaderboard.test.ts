import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { CHROMIUM_ARGS } from '../crawler/browser/browser-pool.js';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { type Browser, chromium } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { packItems } from '../tracker/store/item-store.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const requireAll = process.env.LIFEBOAT_REQUIRE_ALL === '1';
const NOW = 1_700_000_000_000;

/** The page's byte format, re-implemented here so the test checks the page, not itself. */
function expectedBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(2)} ${units[i]}`;
}
const int = (text: string) => Number(text.replace(/,/g, ''));

describe.skipIf(!haveChromium && !requireAll)('leaderboard page in real Chromium', () => {
  let dir: string;
  let store: SqliteItemStore;
  let app: FastifyInstance;
  let base: string;
  let browser: Browser | undefined;

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`Chromium is missing at ${CHROMIUM} (LIFEBOAT_REQUIRE_ALL=1)`);
    dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-board-'));
    const project = parseProject({ name: 'board-test', profile: 'demo', item_size: 1000, lease_secs: 600, min_client_version: '0.1.0' });
    store = new SqliteItemStore({ path: path.join(dir, 't.sqlite'), project: project.name });
    await store.init();
    await store.seed(packItems(new RangeSet([{ start: 1, end: 25_000 }]), 1000));
    // Three volunteers with different progress; one of them is mid-item.
    const work: [string, number, number][] = [['alice', 6, 4_321_000_000], ['bob.b', 3, 987_654], ['carol_c-3', 1, 512]];
    for (const [nick, items, bytes] of work) {
      const node = await store.registerNode({ nick, tokenHash: `hash-${nick}`, now: NOW });
      for (let i = 0; i < items; i++) {
        const c = await store.claim({ nodeId: node.id, now: NOW - 30_000, leaseMs: 600_000 });
        if (c.kind !== 'lease') throw new Error('seed ran out');
        await store.done({
          nodeId: node.id,
          leaseId: c.lease.leaseId,
          stats: { counts: { archived: 900, missing: 100, gone: 0, restricted: 0, failed: 0 }, bytes: Math.round(bytes / items), warcs: [] },
          now: NOW - 20_000 + i,
        });
      }
    }
    const dave = await store.registerNode({ nick: 'dave', tokenHash: 'hash-dave', now: NOW });
    const c = await store.claim({ nodeId: dave.id, now: NOW - 10_000, leaseMs: 600_000 });
    if (c.kind === 'lease') await store.heartbeat({ nodeId: dave.id, leaseId: c.lease.leaseId, finished: new RangeSet([{ start: c.lease.ranges.min!, end: c.lease.ranges.min! + 249 }]), now: NOW - 5_000, leaseMs: 600_000 });
    app = await buildTrackerApp({
      store,
      project,
      adminToken: 'admin-token-for-tests-0123456789',
      now: () => NOW,
      leaseMs: 600_000,
      rateLimit: { max: 1000, timeWindowMs: 60_000 },
      statsCacheMs: 0,
      expireEveryMs: 0,
    });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('renders the numbers /api/v1/stats reports', async () => {
    const page = await browser!.newPage({ viewport: { width: 1100, height: 800 } });
    await page.goto(`${base}/`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
    const api = (await (await request(`${base}/api/v1/stats`)).body.json()) as any;

    expect(api.nodes.map((n: { nick: string }) => n.nick)).toEqual(['alice', 'bob.b', 'carol_c-3', 'dave']);
    expect(await page.textContent('#project')).toBe('board-test');
    expect(int((await page.textContent('#ids-done'))!)).toBe(api.ids.done);
    expect(int((await page.textContent('#ids-total'))!)).toBe(api.ids.total);
    expect(int((await page.textContent('#items-done'))!)).toBe(api.items.done);
    expect(int((await page.textContent('#items-total'))!)).toBe(api.items.total);
    expect(int((await page.textContent('#active-nodes'))!)).toBe(api.active_nodes);
    expect(await page.textContent('#bytes')).toBe(expectedBytes(api.bytes));
    expect(await page.textContent('#progress-pct')).toBe(`${(api.progress * 100).toFixed(2)} %`);
    expect(Number((await page.textContent('#rate'))!.replace(/[^0-9.]/g, ''))).toBeCloseTo(api.rate_ids_per_sec, 2);
    expect(api.ids).toEqual({ total: 25_000, done: 10_250 });
    expect(api.active_nodes).toBe(1);

    const rows = await page.$$eval('#leaderboard tr', (trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent ?? '')),
    );
    expect(rows).toHaveLength(api.nodes.length);
    api.nodes.forEach((n: { nick: string; items: number; ids: number; bytes: number; rate_ids_per_sec: number }, i: number) => {
      const [rank, nick, items, ids, bytes, rate] = rows[i]!;
      expect(rank).toBe(String(i + 1));
      expect(nick).toBe(n.nick);
      expect(int(items!)).toBe(n.items);
      expect(int(ids!)).toBe(n.ids);
      expect(bytes).toBe(expectedBytes(n.bytes));
      expect(Number(rate!.replace(/,/g, ''))).toBeCloseTo(n.rate_ids_per_sec, 2);
    });

    // ETA, the rate chart (one bar per 5-minute bucket of /api/v1/stats/history) and exact bytes on hover.
    expect(api.eta_secs).toBe(Math.round((api.ids.total - api.ids.done) / api.rate_ids_per_sec));
    const d = Math.floor(api.eta_secs / 86400);
    const h = Math.floor((api.eta_secs % 86400) / 3600);
    const m = Math.floor((api.eta_secs % 3600) / 60);
    expect(await page.textContent('#eta')).toBe(d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min`);
    const history = (await (await request(`${base}/api/v1/stats/history`)).body.json()) as any;
    expect(history.bucket_secs).toBe(300);
    expect(history.points).toHaveLength(24 * 12 + 1);
    expect(history.points.reduce((n: number, p: { ids: number }) => n + p.ids, 0)).toBe(api.ids.done);
    const bars = await page.$$eval('#chart rect.bar', (rs) => rs.map((r) => ({ rate: Number(r.getAttribute('data-ids-per-sec')), height: Number(r.getAttribute('height')) })));
    expect(bars.map((b) => b.rate)).toEqual(history.points.map((p: { ids_per_sec: number }) => p.ids_per_sec));
    const peak = Math.max(...bars.map((b) => b.rate));
    expect(peak).toBeGreaterThan(0);
    for (const b of bars) expect(b.height).toBeCloseTo((130 * b.rate) / peak, 1);
    expect(await page.getAttribute('#leaderboard tr[data-nick="alice"] td.bytes', 'title')).toBe(`${api.nodes[0].bytes.toLocaleString('en-US')} bytes, as reported by the node's finished items`);

    const shot = path.join(os.tmpdir(), `lifeboat-leaderboard-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(5_000);
    console.log(`leaderboard screenshot: ${shot}`);
    await page.close();
  });
});
