import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../config/logger.js';
import { uploadItemFiles, uploadThenDone } from '../node/upload.js';
import { RangeSet } from '../config/id-ranges.js';
import { runNode } from '../node/loop.js';
import { NodeCaps, dirBytes } from '../crawler/run/caps.js';
import { startDemoPlatform } from '../scripts/demo/demo-platform.js';
import { createS3Client } from '../storage/upload/s3-client.js';
import { TrackerClient } from '../tracker/client/client.js';
import { TrackerRequestError } from '../tracker/client/errors.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp, serveTracker } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';
import { S3Uploader, type TrackerUploader } from '../tracker/server/uploader.js';

interface S3rverInstance {
  configureBuckets(): Promise<void>;
  callback(): http.RequestListener;
}
const S3rver = createRequire(import.meta.url)('s3rver') as new (options: Record<string, unknown>) => S3rverInstance;

const BUCKET = 'lifeboat-tracker';
const PREFIX = 'rescues';
const ADMIN = 'admin-token-for-upload-tests-0123';
const VERSION = '0.1.0';
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const project = parseProject({
  name: 'up-test',
  profile: 'demo',
  item_size: 25,
  lease_secs: 60,
  min_client_version: VERSION,
  upload: { bucket: BUCKET, prefix: PREFIX },
});

const root = mkdtempSync(join(tmpdir(), 'lifeboat-tracker-upload-'));
let s3Server: http.Server;
let endpoint: string;
let s3: S3Client;
let store: SqliteItemStore;
let app: FastifyInstance;
let base: string;
let clock = 1_700_000_000_000;

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  const s3rver = new S3rver({ silent: true, directory: join(root, 's3rver'), configureBuckets: [{ name: BUCKET, configs: [] }] });
  await s3rver.configureBuckets();
  s3Server = http.createServer(s3rver.callback());
  endpoint = `http://127.0.0.1:${await listen(s3Server)}`;
  s3 = createS3Client({ endpoint, credentials });
  store = new SqliteItemStore({ path: join(root, 'tracker.sqlite'), project: project.name });
  await store.init();
  app = await buildTrackerApp({
    store,
    project,
    adminToken: ADMIN,
    now: () => clock,
    leaseMs: 60_000,
    rateLimit: { max: 10_000, timeWindowMs: 60_000 },
    statsCacheMs: 0,
    expireEveryMs: 0,
    uploader: new S3Uploader({ s3Client: s3, bucket: BUCKET, prefix: PREFIX, expiresSecs: 600 }),
  });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await app?.close();
  await store?.close();
  s3?.destroy();
  s3Server?.close();
  rmSync(root, { recursive: true, force: true });
});

beforeEach(() => {
  clock += 3_600_000;
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const client = (token?: string) => new TrackerClient({ baseUrl: base, clientVersion: VERSION, ...(token ? { token } : {}), retry: { maxAttempts: 2, baseDelayMs: 1 } });
const counts = { archived: 25, missing: 0, gone: 0, restricted: 0, failed: 0 };
let nextId = 1;

async function getObject(key: string): Promise<Buffer | undefined> {
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

/** Seeds one item, registers a node and claims it; writes a fake shard (random WARC bytes + shard.json). */
async function claimWithShard(nick: string, warcSizes: number[] = [70_000, 1_234]) {
  const start = nextId;
  nextId += 25;
  const seeded = await request(`${base}/api/v1/admin/seed`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ranges: `${start}-${start + 24}` }),
  });
  expect(seeded.statusCode).toBe(200);
  await seeded.body.text();
  const node = client();
  await node.register(nick);
  const item = (await node.claim())!;
  expect(item.upload).toEqual({ mode: 's3-presigned' });
  const dir = join(root, 'nodes', nick);
  mkdirSync(join(dir, 'warcs'), { recursive: true });
  const bytes: Record<string, Buffer> = {};
  const warcs = warcSizes.map((size, i) => {
    const name = `demo-2024010100000${i}-0000${i + 1}-${nick}.warc.gz`;
    bytes[name] = randomBytes(size);
    writeFileSync(join(dir, 'warcs', name), bytes[name]!);
    return { name, size, sha256: sha256(bytes[name]!) };
  });
  writeFileSync(join(dir, 'shard.json'), JSON.stringify({ format: 'lifeboat-shard-1', profile: 'demo', warcs }));
  const stats = { counts, bytes: warcSizes.reduce((a, b) => a + b, 0), warcs };
  const keyOf = (name: string) => `${PREFIX}/${project.name}/item-${item.id}/${name}`;
  return { node, item, dir, bytes, warcs, stats, keyOf };
}

async function refusal(p: Promise<unknown>): Promise<TrackerRequestError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrackerRequestError);
  return err as TrackerRequestError;
}

describe('uploads through the tracker (pre-signed URLs on s3rver)', () => {
  it('presign → PUT → done: accepted, and the objects in the store hold the node’s bytes', async () => {
    const { node, item, dir, bytes, warcs, stats, keyOf } = await claimWithShard('alice');
    const urls = await node.uploadUrls(item.leaseId, warcs);
    expect(urls.map((u) => u.key)).toEqual(warcs.map((w) => keyOf(w.name)));
    for (const u of urls) {
      expect(u).toMatchObject({ method: 'PUT', headers: { 'x-amz-meta-sha256': expect.stringMatching(/^[0-9a-f]{64}$/) } });
      // The URL is signed for this one key: no credentials in it beyond the access key id.
      expect(u.url).toContain(encodeURI(keyOf(u.name)));
      expect(u.url).not.toContain('S3RVER&');
      expect(u.expiresAt.getTime()).toBeGreaterThan(Date.now());
    }
    const sent = await uploadItemFiles({ client: node, leaseId: item.leaseId, dir, warcs });
    expect(sent.files).toBe(3);
    expect(await node.done(item.leaseId, stats)).toEqual({ duplicate: false });
    expect(await node.done(item.leaseId, stats)).toEqual({ duplicate: true });
    for (const w of warcs) expect((await getObject(keyOf(w.name)))!.equals(bytes[w.name]!)).toBe(true);
    expect((await getObject(keyOf('shard.json')))!.equals(readFileSync(join(dir, 'shard.json')))).toBe(true);
    const metrics = await (await request(`${base}/metrics`)).body.text();
    expect(metrics).toMatch(/lifeboat_tracker_upload_urls_total\{project="up-test"\} [1-9]/);
  });

  it('refuses done before the upload, naming the missing WARC, and keeps the item leased', async () => {
    const { node, item, dir, warcs, stats } = await claimWithShard('bob');
    const err = await refusal(node.done(item.leaseId, stats));
    expect(err).toMatchObject({ status: 422, code: 'E_UPLOAD_UNVERIFIED' });
    expect(err.message).toContain(warcs[0]!.name);
    expect(err.message).toContain(warcs[1]!.name);
    expect(err.message).toMatch(/2 of 2 WARCs .* not found/);
    expect(err.message).toMatch(/the item stays leased/);
    // Still leased: the heartbeat works, and after the upload done is accepted.
    await node.heartbeat(item.leaseId, item.ranges);
    await uploadItemFiles({ client: node, leaseId: item.leaseId, dir, warcs });
    expect(await node.done(item.leaseId, stats)).toEqual({ duplicate: false });
  });

  it('refuses a short or tampered object, and a done that reports other bytes than were uploaded', async () => {
    const { node, item, dir, bytes, warcs, stats, keyOf } = await claimWithShard('carol');
    await uploadItemFiles({ client: node, leaseId: item.leaseId, dir, warcs });
    const [first, second] = warcs as [(typeof warcs)[0], (typeof warcs)[0]];
    // Someone with store access replaces the first WARC by a shorter copy (no sha256 metadata).
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: keyOf(first.name), Body: bytes[first.name]!.subarray(0, 1000) }));
    const short = await refusal(node.done(item.leaseId, stats));
    expect(short).toMatchObject({ status: 422, code: 'E_UPLOAD_UNVERIFIED' });
    expect(short.message).toContain(`${first.name} (${keyOf(first.name)}: size 1000 on the store, ${first.size} expected)`);
    expect(short.message).not.toContain(second.name);
    // A done that claims another sha256 for the second WARC than it was uploaded with.
    await uploadItemFiles({ client: node, leaseId: item.leaseId, dir, warcs });
    const lying = { ...stats, warcs: [first, { ...second, sha256: 'f'.repeat(64) }] };
    const other = await refusal(node.done(item.leaseId, lying));
    expect(other.message).toContain(`${second.name} (${keyOf(second.name)}: sha256 ${second.sha256} on the store, ${'f'.repeat(64)} expected)`);
    expect(await node.done(item.leaseId, stats)).toEqual({ duplicate: false });
  });

  it('refuses unsafe file names with 400 and signs nothing', async () => {
    const { node, item } = await claimWithShard('dave');
    const ok = { size: 10, sha256: 'a'.repeat(64) };
    for (const name of ['../x.warc.gz', 'a/b.warc.gz', '..', 'x.warc', 'shard.sqlite', '/etc/passwd', 'a..warc.gz', 'x.warc.gz\n']) {
      const err = await refusal(node.uploadUrls(item.leaseId, [{ name, ...ok }]));
      expect(err, name).toMatchObject({ status: 400, code: 'E_BAD_REQUEST' });
      expect(err.message, name).toMatch(/^tracker refused \/api\/v1\/upload-urls: files\.0\.name: /);
    }
    const dup = await refusal(node.uploadUrls(item.leaseId, [{ name: 'a.warc.gz', ...ok }, { name: 'a.warc.gz', ...ok }]));
    expect(dup.message).toMatch(/each file name once/);
    const big = await refusal(node.uploadUrls(item.leaseId, [{ name: 'a.warc.gz', size: 6 * 1024 ** 3, sha256: ok.sha256 }]));
    expect(big.message).toMatch(/5 GiB/);
    // done, too, only accepts WARC names it could have signed.
    const bad = await refusal(node.done(item.leaseId, { counts, bytes: 10, warcs: [{ name: '../../x.warc.gz', ...ok }] }));
    expect(bad).toMatchObject({ status: 400 });
  });

  it('gives no URLs for a stale, finished or foreign lease', async () => {
    const { node, item, dir, warcs, stats } = await claimWithShard('erin');
    const other = client();
    await other.register('mallory');
    expect(await refusal(other.uploadUrls(item.leaseId, warcs))).toMatchObject({ status: 409, code: 'E_LEASE_NOT_YOURS' });
    expect(await refusal(node.uploadUrls('no-such-lease', warcs))).toMatchObject({ status: 409, code: 'E_LEASE_STALE' });
    clock += 61_000;
    const expired = await refusal(node.uploadUrls(item.leaseId, warcs));
    expect(expired).toMatchObject({ status: 409, code: 'E_LEASE_STALE' });
    expect(expired.message).toMatch(/expired/);
    // A second node takes the item over; the first one's done and URLs are refused for good.
    const taken = (await other.claim())!;
    expect(taken.id).toBe(item.id);
    await uploadItemFiles({ client: other, leaseId: taken.leaseId, dir, warcs });
    expect(await refusal(node.done(item.leaseId, stats))).toMatchObject({ status: 409 });
    expect(await other.done(taken.leaseId, stats)).toEqual({ duplicate: false });
    expect(await refusal(other.uploadUrls(taken.leaseId, warcs))).toMatchObject({ status: 409 });
  });

  it('uploadThenDone uploads when the claim did not say so but done is refused for missing WARCs (a resumed item)', async () => {
    const { node, item, dir, stats, keyOf, warcs } = await claimWithShard('frank');
    const lines: string[] = [];
    const log = { ...silentLogger, log: (_level: string, message: string) => void lines.push(message) } as unknown as typeof silentLogger;
    const result = await uploadThenDone({ client: node, item: { ...item, upload: null }, dir, stats, log });
    expect(result).toEqual({ duplicate: false, uploads: 1 });
    expect(lines.join('\n')).toMatch(/has not got item \d+'s WARCs yet/);
    expect(await getObject(keyOf(warcs[0]!.name))).toBeDefined();
  });

  it('lists the new route in /openapi.json and announces no upload without an uploader', async () => {
    const doc = (await (await request(`${base}/openapi.json`)).body.json()) as { paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>> };
    const op = doc.paths['/api/v1/upload-urls']!.post!;
    expect(op.requestBody).toBeDefined();
    expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['200', '400', '409']));
    expect(Object.keys(doc.paths['/api/v1/done']!.post!.responses)).toContain('422');

    const plainProject = parseProject({ name: 'plain', profile: 'demo', item_size: 10, lease_secs: 60, min_client_version: VERSION });
    const plainStore = new SqliteItemStore({ path: join(root, 'plain.sqlite'), project: 'plain' });
    await plainStore.init();
    const plain = await buildTrackerApp({ store: plainStore, project: plainProject, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000 }, expireEveryMs: 0 });
    try {
      const url = await plain.listen({ port: 0, host: '127.0.0.1' });
      await plainStore.seed([new RangeSet([{ start: 1, end: 10 }])]);
      const c = new TrackerClient({ baseUrl: url, clientVersion: VERSION, retry: { maxAttempts: 1 } });
      await c.register('plainnode');
      const item = (await c.claim())!;
      expect(item.upload).toBeNull();
      const err = await refusal(c.uploadUrls(item.leaseId, [{ name: 'a.warc.gz', size: 1, sha256: 'a'.repeat(64) }]));
      expect(err).toMatchObject({ status: 400, code: 'E_UPLOAD_OFF' });
    } finally {
      await plain.close();
      await plainStore.close();
    }
    await expect(buildTrackerApp({ store, project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 1, timeWindowMs: 1000 } })).rejects.toThrow(/upload section: pass an uploader/);
  });
});

describe('an upload store that fails', () => {
  it('answers done with 503 E_UPLOAD_STORE (retryable) and keeps the item leased', async () => {
    const fsStore = new SqliteItemStore({ path: join(root, 'failing.sqlite'), project: 'failing' });
    await fsStore.init();
    let down = true;
    const uploader = {
      mode: 's3-presigned' as const,
      presign: async () => [],
      verify: async (_key: string, size: number) => {
        if (down) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
        return { ok: true as const, size, etag: '', sha256: undefined, checkedBy: 'read-back' as const };
      },
    };
    const failing = await buildTrackerApp({ store: fsStore, project: parseProject({ ...project, name: 'failing' }), adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000 }, expireEveryMs: 0, uploader });
    try {
      const url = await failing.listen({ port: 0, host: '127.0.0.1' });
      await fsStore.seed([new RangeSet([{ start: 1, end: 5 }])]);
      const c = new TrackerClient({ baseUrl: url, clientVersion: VERSION, retry: { maxAttempts: 1 } });
      await c.register('unlucky');
      const item = (await c.claim())!;
      const stats = { counts, bytes: 1, warcs: [{ name: 'a.warc.gz', size: 1, sha256: 'a'.repeat(64) }] };
      const res = await request(`${url}/api/v1/done`, {
        method: 'POST',
        headers: { authorization: `Bearer ${c.token}`, 'x-lifeboat-version': VERSION, 'content-type': 'application/json' },
        body: JSON.stringify({ lease_id: item.leaseId, stats }),
      });
      expect(res.statusCode).toBe(503);
      expect(await res.body.json()).toMatchObject({ error: 'E_UPLOAD_STORE', message: expect.stringMatching(/could not check uploaded WARCs.*ECONNREFUSED/) });
      down = false;
      expect(await c.done(item.leaseId, stats)).toEqual({ duplicate: false });
    } finally {
      await failing.close();
      await fsStore.close();
    }
  });
});

describe('serveTracker with an upload section', () => {
  const writeProject = (file: string, upload: Record<string, unknown>) =>
    writeFileSync(file, JSON.stringify({ name: 'served', profile: 'demo', item_size: 10, lease_secs: 60, min_client_version: VERSION, upload }));

  it('builds the S3 client from the passed env, checks the bucket, and announces uploads', async () => {
    const file = join(root, 'served.json');
    writeProject(file, { bucket: BUCKET, prefix: 'served', endpoint, expires_secs: 120 });
    const env = { LIFEBOAT_ADMIN_TOKEN: ADMIN, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    const running = await serveTracker({ projectFile: file, db: `sqlite:${join(root, 'served.sqlite')}`, port: 0, env, logger: false });
    try {
      await running.store.seed([new RangeSet([{ start: 1, end: 10 }])]);
      const c = new TrackerClient({ baseUrl: running.url, clientVersion: VERSION, retry: { maxAttempts: 1 } });
      await c.register('served');
      const item = (await c.claim())!;
      expect(item.upload).toEqual({ mode: 's3-presigned' });
      const [u] = await c.uploadUrls(item.leaseId, [{ name: 'a.warc.gz', size: 3, sha256: sha256(Buffer.from('abc')) }]);
      expect(u!.key).toBe(`served/served/item-${item.id}/a.warc.gz`);
      expect(u!.url.startsWith(`${endpoint}/${BUCKET}/served/served/item-`)).toBe(true);
      expect(u!.url).toMatch(/X-Amz-Expires=120/);
    } finally {
      await running.close();
    }
  });

  it('refuses to start on a missing bucket or half-set credentials', async () => {
    const file = join(root, 'served-bad.json');
    writeProject(file, { bucket: 'no-such-bucket', prefix: '', endpoint });
    const env = { LIFEBOAT_ADMIN_TOKEN: ADMIN, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    await expect(serveTracker({ projectFile: file, db: `sqlite:${join(root, 'bad.sqlite')}`, port: 0, env, logger: false })).rejects.toThrow(/no-such-bucket.*not found/);
    await expect(serveTracker({ projectFile: file, db: `sqlite:${join(root, 'bad.sqlite')}`, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: ADMIN, AWS_ACCESS_KEY_ID: 'x' }, logger: false })).rejects.toThrow(
      /AWS_SECRET_ACCESS_KEY/,
    );
    writeProject(file, { bucket: BUCKET, prefix: '../up', endpoint });
    await expect(serveTracker({ projectFile: file, port: 0, env, logger: false })).rejects.toThrow(/upload\.prefix/);
    writeProject(file, { bucket: BUCKET, prefix: '', endpoint, secret: 'x' });
    await expect(serveTracker({ projectFile: file, port: 0, env, logger: false })).rejects.toThrow(/upload.*secret/);
  });
});

describe('runNode with uploads through the tracker', () => {
  it('crawls the demo platform and its WARCs and shard.json land in s3rver, then done is accepted', async () => {
    const platform = await startDemoPlatform({ posts: 50 });
    // Its own project and tracker (same bucket), so no item left over by the tests above is claimed.
    const nodeProject = parseProject({ ...project, name: 'node-run' });
    const nodeStore = new SqliteItemStore({ path: join(root, 'node-run.sqlite'), project: nodeProject.name });
    await nodeStore.init();
    const nodeApp = await buildTrackerApp({
      store: nodeStore,
      project: nodeProject,
      adminToken: ADMIN,
      leaseMs: 60_000,
      rateLimit: { max: 10_000, timeWindowMs: 60_000 },
      expireEveryMs: 0,
      uploader: new S3Uploader({ s3Client: s3, bucket: BUCKET, prefix: PREFIX }),
    });
    try {
      const trackerUrl = await nodeApp.listen({ port: 0, host: '127.0.0.1' });
      await nodeStore.seed([new RangeSet([{ start: 1, end: 25 }])]);
      const outDir = join(root, 'node-run');
      const result = await runNode({
        trackerUrl,
        nick: 'runner',
        outDir,
        logger: silentLogger,
        nodeName: 'runner',
        baseUrl: platform.url,
        allowPrivateNetwork: true,
        maxItems: 1,
        exitWhenDone: true,
      });
      expect(result).toMatchObject({ items: 1, interrupted: false });
      expect(result.counts.archived).toBeGreaterThan(10);
      const items = readdirSync(join(outDir, 'items'));
      expect(items).toHaveLength(1);
      const itemDir = join(outDir, 'items', items[0]!);
      const manifest = JSON.parse(readFileSync(join(itemDir, 'shard.json'), 'utf8')) as { warcs: { name: string; size: number }[] };
      expect(manifest.warcs.length).toBeGreaterThan(0);
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/node-run/item-${items[0]}/` }));
      const keys = (listed.Contents ?? []).map((o) => o.Key!.split('/').pop()).sort();
      expect(keys).toEqual([...manifest.warcs.map((w) => w.name), 'shard.json'].sort());
      for (const w of manifest.warcs) {
        const stored = await getObject(`${PREFIX}/node-run/item-${items[0]}/${w.name}`);
        expect(stored!.equals(readFileSync(join(itemDir, 'warcs', w.name)))).toBe(true);
      }
      const stats = await nodeStore.stats({ now: Date.now(), windowMs: 60_000 });
      expect(stats.items).toMatchObject({ done: 1, total: 1 });
      expect(stats.bytes).toBe(manifest.warcs.reduce((n, w) => n + w.size, 0));
    } finally {
      await nodeApp.close();
      await nodeStore.close();
      await platform.close();
    }
  }, 60_000);
  it('under --max-disk deletes verified-uploaded WARCs to make room and goes on (issue 14)', async () => {
    const platform = await startDemoPlatform({ posts: 400, trackPaths: false });
    const capProject = parseProject({ ...project, name: 'disk-cap', media: { collect: false } });
    const capStore = new SqliteItemStore({ path: join(root, 'disk-cap.sqlite'), project: capProject.name });
    await capStore.init();
    const capApp = await buildTrackerApp({ store: capStore, project: capProject, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0, uploader: new S3Uploader({ s3Client: s3, bucket: BUCKET, prefix: PREFIX }) });
    try {
      const trackerUrl = await capApp.listen({ port: 0, host: '127.0.0.1' });
      await capStore.seedNew(new RangeSet([{ start: 1, end: 40 }]), 5);
      const outDir = join(root, 'disk-cap');
      const cap = 5 * 1024 * 1024;
      const caps = new NodeCaps({ outDir, maxDiskBytes: cap, log: silentLogger });
      const result = await runNode({ trackerUrl, nick: 'capped', outDir, logger: silentLogger, nodeName: 'capped', baseUrl: platform.url, allowPrivateNetwork: true, exitWhenDone: true, caps });
      // All 8 items: the WARCs of uploaded ones made room (kept, the folder plus the room an item
      // needs passes the cap after 5 items: the node stops there when nothing is marked uploaded).
      expect(result).toMatchObject({ items: 8, interrupted: false });
      expect(await dirBytes(outDir)).toBeLessThanOrEqual(cap);
      const items = readdirSync(join(outDir, 'items'));
      const deleted = items.filter((i) => existsSync(join(outDir, 'items', i, 'uploaded.json')) && readdirSync(join(outDir, 'items', i, 'warcs')).length === 0);
      expect(deleted.length).toBeGreaterThan(0);
      // What was deleted is in the bucket.
      for (const i of deleted) {
        const manifest = JSON.parse(readFileSync(join(outDir, 'items', i, 'shard.json'), 'utf8')) as { warcs: { name: string; size: number }[] };
        for (const w of manifest.warcs) expect((await getObject(`${PREFIX}/disk-cap/item-${i}/${w.name}`))!.length).toBe(w.size);
      }
    } finally {
      await capApp.close();
      await capStore.close();
      await platform.close();
    }
  }, 120_000);

  it('writes uploaded.json (what --max-disk may free) only once the tracker accepted done, never on the upload alone (issue 21 §5)', async () => {
    const platform = await startDemoPlatform({ posts: 40, trackPaths: false });
    const gateProject = parseProject({ ...project, name: 'gate-run', media: { collect: false } });
    const gateStore = new SqliteItemStore({ path: join(root, 'gate-run.sqlite'), project: gateProject.name });
    await gateStore.init();
    const real = new S3Uploader({ s3Client: s3, bucket: BUCKET, prefix: PREFIX });
    let checks = 0;
    // The store holds the files, but the tracker's check says no (as for damaged bytes): done is refused.
    const refusing: TrackerUploader = {
      mode: real.mode,
      presign: (files, keyPrefix) => real.presign(files, keyPrefix),
      verify: async (key) => {
        checks++;
        return { ok: false, reason: `${key}: held back by the test` };
      },
    };
    const app = await buildTrackerApp({ store: gateStore, project: gateProject, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0, uploader: refusing });
    try {
      const trackerUrl = await app.listen({ port: 0, host: '127.0.0.1' });
      await gateStore.seed([new RangeSet([{ start: 1, end: 10 }])]);
      const outDir = join(root, 'gate-run');
      const outcome = await runNode({ trackerUrl, nick: 'gated', outDir, logger: silentLogger, nodeName: 'gated', baseUrl: platform.url, allowPrivateNetwork: true, maxItems: 1, exitWhenDone: true, heartbeatMs: 100, uploadRetryBaseMs: 20 }).catch((e: unknown) => e);
      expect(String(outcome)).toMatch(/held back by the test/);
      expect(checks).toBeGreaterThan(0);
      const items = readdirSync(join(outDir, 'items'));
      expect(items).toHaveLength(1);
      const itemDir = join(outDir, 'items', items[0]!);
      const manifest = JSON.parse(readFileSync(join(itemDir, 'shard.json'), 'utf8')) as { warcs: { name: string }[] };
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/gate-run/item-${items[0]}/` }));
      expect((listed.Contents ?? []).length).toBe(manifest.warcs.length + 1); // uploaded, WARCs and shard.json
      expect(existsSync(join(itemDir, 'uploaded.json'))).toBe(false);
      for (const w of manifest.warcs) expect(existsSync(join(itemDir, 'warcs', w.name))).toBe(true);
      expect((await gateStore.stats({ now: Date.now(), windowMs: 60_000 })).items).toMatchObject({ done: 0 });
    } finally {
      await app.close();
      await gateStore.close();
      await platform.close();
    }
  }, 60_000);

  it('keeps its lease through a storage outage longer than its client retries: waits, uploads again and finishes', async () => {
    const platform = await startDemoPlatform({ posts: 20 });
    const outageProject = parseProject({ ...project, name: 'outage-run' });
    const outageStore = new SqliteItemStore({ path: join(root, 'outage-run.sqlite'), project: outageProject.name });
    await outageStore.init();
    const real = new S3Uploader({ s3Client: s3, bucket: BUCKET, prefix: PREFIX });
    let refusals = 0;
    // The storage answers the tracker's checks with "connection refused" for the first five dones;
    // the node's client gives up after two attempts, so only the node's own waiting gets it through.
    const flaky: TrackerUploader = {
      mode: real.mode,
      presign: (files, keyPrefix) => real.presign(files, keyPrefix),
      verify: async (key, size, sha256) => {
        if (refusals < 5) {
          refusals++;
          throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
        }
        return real.verify(key, size, sha256);
      },
    };
    const app = await buildTrackerApp({ store: outageStore, project: outageProject, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0, uploader: flaky });
    try {
      const trackerUrl = await app.listen({ port: 0, host: '127.0.0.1' });
      await outageStore.seed([new RangeSet([{ start: 1, end: 10 }])]);
      const result = await runNode({
        trackerUrl,
        nick: 'patient',
        outDir: join(root, 'outage-run'),
        logger: silentLogger,
        nodeName: 'patient',
        baseUrl: platform.url,
        allowPrivateNetwork: true,
        maxItems: 1,
        exitWhenDone: true,
        heartbeatMs: 100,
        uploadRetryBaseMs: 50,
        client: new TrackerClient({ baseUrl: trackerUrl, clientVersion: VERSION, retry: { maxAttempts: 2, baseDelayMs: 10 } }),
      });
      expect(result).toMatchObject({ items: 1, interrupted: false });
      expect(refusals).toBe(5);
      const stats = await outageStore.stats({ now: Date.now(), windowMs: 60_000 });
      expect(stats.items).toMatchObject({ done: 1, total: 1 });
    } finally {
      await app.close();
      await outageStore.close();
      await platform.close();
    }
  }, 60_000);
});
