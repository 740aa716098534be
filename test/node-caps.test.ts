import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../config/logger.js';
import { NodeCaps, dirBytes, freeUploadedWarcs, markUploaded } from '../crawler/run/caps.js';
import { runNode } from '../node/loop.js';
import { UploadLedger } from '../storage/upload/ledger.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { seedCommand, statusCommand } from '../tracker/server/commands.js';
import { serveTracker, type RunningTracker } from '../tracker/server/server.js';

/** Issue 14: a volunteer's --max-disk and --max-hours. */

const log = silentLogger;
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-caps-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function itemWithWarcs(outDir: string, item: number, warcs: Record<string, number>) {
  const dir = path.join(outDir, 'items', String(item));
  mkdirSync(path.join(dir, 'warcs'), { recursive: true });
  for (const [name, size] of Object.entries(warcs)) writeFileSync(path.join(dir, 'warcs', name), Buffer.alloc(size, 1));
  writeFileSync(path.join(dir, 'shard.json'), '{}');
  return dir;
}

describe('freeing room: only WARCs whose upload was verified', () => {
  it('deletes marked WARCs of the uploaded size, keeps the rest and every other file', async () => {
    const out = path.join(tmp, 'free');
    const a = itemWithWarcs(out, 1, { 'a.warc.gz': 1000, 'b.warc.gz': 2000 });
    const c = itemWithWarcs(out, 2, { 'c.warc.gz': 3000 });
    await markUploaded(a, [{ name: 'a.warc.gz', size: 1000, sha256: 'x'.repeat(64) }]);
    // c changed after its upload (size differs): not the file that was verified.
    await markUploaded(c, [{ name: 'c.warc.gz', size: 2999, sha256: 'x'.repeat(64) }]);
    const before = await dirBytes(out);
    expect(await freeUploadedWarcs(out, log)).toEqual({ files: 1, bytes: 1000 });
    expect(existsSync(path.join(a, 'warcs', 'a.warc.gz'))).toBe(false);
    expect(existsSync(path.join(a, 'warcs', 'b.warc.gz'))).toBe(true);
    expect(existsSync(path.join(c, 'warcs', 'c.warc.gz'))).toBe(true);
    expect(existsSync(path.join(a, 'shard.json'))).toBe(true);
    expect(await dirBytes(out)).toBe(before - 1000);
  });

  it('frees only what the upload ledger has verified: never a pending or uploading file (issue 21 §5)', async () => {
    const out = path.join(tmp, 'ledger');
    const dir = itemWithWarcs(out, 1, { 'pending.warc.gz': 1000, 'uploading.warc.gz': 2000, 'verified.warc.gz': 3000, 'again.warc.gz': 4000 });
    const ledger = UploadLedger.open(dir);
    const target = { target: 's3://b/p', endpoint: '' };
    const info = (name: string, size: number) => ({ key: `p/warcs/${name}`, size, mtimeMs: 1, sha256: 'x'.repeat(64) });
    ledger.begin({ file: 'warcs/pending.warc.gz', ...target }, info('pending.warc.gz', 1000));
    ledger.begin({ file: 'warcs/uploading.warc.gz', ...target }, info('uploading.warc.gz', 2000));
    ledger.setUploadId({ file: 'warcs/uploading.warc.gz', ...target }, 'upload-1');
    ledger.addPart({ file: 'warcs/uploading.warc.gz', ...target }, { n: 1, etag: 'e', size: 2000 });
    ledger.begin({ file: 'warcs/verified.warc.gz', ...target }, info('verified.warc.gz', 3000));
    ledger.markVerified({ file: 'warcs/verified.warc.gz', ...target }, info('verified.warc.gz', 3000));
    // Verified once, then the store disagreed on a re-run: back to pending.
    ledger.begin({ file: 'warcs/again.warc.gz', ...target }, info('again.warc.gz', 4000));
    ledger.markVerified({ file: 'warcs/again.warc.gz', ...target }, info('again.warc.gz', 4000));
    ledger.noteError({ file: 'warcs/again.warc.gz', ...target }, 'ETag differs');
    ledger.close();
    expect(await freeUploadedWarcs(out, log)).toEqual({ files: 1, bytes: 3000 });
    for (const name of ['pending', 'uploading', 'again']) expect(existsSync(path.join(dir, 'warcs', `${name}.warc.gz`))).toBe(true);
    expect(existsSync(path.join(dir, 'warcs', 'verified.warc.gz'))).toBe(false);
  });

  it('beforeClaim over the cap frees uploaded WARCs and goes on; without any it stops', async () => {
    const out = path.join(tmp, 'claim');
    const a = itemWithWarcs(out, 1, { 'a.warc.gz': 50_000 });
    const caps = new NodeCaps({ outDir: out, maxDiskBytes: 40_000, log });
    expect(await caps.beforeClaim()).toMatch(/--max-disk 40000 bytes reached: the data folder holds 50\d\d\d bytes/);
    await markUploaded(a, [{ name: 'a.warc.gz', size: 50_000, sha256: 'x'.repeat(64) }]);
    expect(await caps.beforeClaim()).toBeUndefined();
    expect(await dirBytes(out)).toBeLessThan(40_000);
    // Room for one more item of the largest size seen is needed.
    caps.noteItemBytes(39_999);
    expect(await caps.beforeClaim()).toMatch(/an item needs about 39999/);
    expect(caps.describe()).toMatch(/^disk 0\.00\/0\.00 GiB$/);
  });

  it('--max-hours: stops claiming once the time is up', async () => {
    let t = 0;
    const caps = new NodeCaps({ outDir: tmp, maxHours: 0.5, log, now: () => t });
    expect(await caps.beforeClaim()).toBeUndefined();
    t = 1_799_999;
    expect(await caps.beforeClaim()).toBeUndefined();
    t = 1_800_000;
    expect(await caps.beforeClaim()).toBe('--max-hours 0.5 reached');
    expect(caps.describe()).toBe('0.5/0.5 h');
  });
});

describe('a node under --max-disk against a real tracker', () => {
  let platform: DemoPlatform;
  let tracker: RunningTracker;
  let db: string;
  beforeAll(async () => {
    platform = await startDemoPlatform({ posts: 400, trackPaths: false });
    const project = path.join(tmp, 'project.yaml');
    writeFileSync(project, 'name: caps\nprofile: demo\nitem_size: 40\nlease_secs: 30\n');
    db = `sqlite:${path.join(tmp, 'tracker.sqlite')}`;
    await seedCommand({ db, project: 'caps', ids: '1-400', itemSize: 40, create: true });
    tracker = await serveTracker({ projectFile: project, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-caps-test' }, logger: false, baseUrl: platform.url });
  });
  afterAll(async () => {
    await tracker?.close();
    await platform?.close();
  });

  it('stops claiming before the data folder passes the cap, and never goes above it', async () => {
    const out = path.join(tmp, 'node-disk');
    const node = (caps?: NodeCaps, maxItems?: number) =>
      runNode({ trackerUrl: tracker.url, nick: 'capped', outDir: out, logger: log, nodeName: 'n', baseUrl: platform.url, allowPrivateNetwork: true, exitWhenDone: true, heartbeatMs: 1000, ...(caps ? { caps } : {}), ...(maxItems ? { maxItems } : {}) });
    // One item without a cap tells how much an item takes here.
    expect((await node(undefined, 1)).items).toBe(1);
    const oneItem = await dirBytes(out);
    // Room for several items: the in-item stop extrapolates two sampling intervals of growth, which under load can be most of an item.
    const cap = Math.floor(oneItem * 6);
    let highest = 0;
    const watch = setInterval(() => void dirBytes(out).then((b) => (highest = Math.max(highest, b))), 20);
    const caps = new NodeCaps({ outDir: out, maxDiskBytes: cap, log });
    let result;
    try {
      result = await node(caps);
    } finally {
      clearInterval(watch);
    }
    const final = await dirBytes(out);
    expect(result.interrupted).toBe(false);
    expect(result.items).toBeGreaterThanOrEqual(1);
    expect(result.items).toBeLessThan(9);
    expect(final).toBeLessThanOrEqual(cap);
    expect(highest).toBeLessThanOrEqual(cap);
    const { stats } = await statusCommand({ db, project: 'caps' });
    expect(stats.items.done).toBe(1 + result.items);
    expect(stats.items.claimed).toBe(0);
  });
});
