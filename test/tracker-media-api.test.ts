import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { TrackerClient } from '../tracker/client/client.js';
import { TrackerRequestError } from '../tracker/client/errors.js';
import { type ItemStore, packItems } from '../tracker/store/item-store.js';
import { parseProject, type ProjectConfig } from '../tracker/store/project.js';
import { buildTrackerApp } from '../tracker/server/server.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';

/**
 * Issue 13 over HTTP: media URLs reported with heartbeats (scope-checked, bounded, refused whole
 * when one URL is bad), claims of one kind, and a tracker restarted while a report is in flight.
 */

const ADMIN = 'admin-token-for-tests-0123456789';
const VERSION = '0.1.0';
const r = (start: number, end: number) => new RangeSet([{ start, end }]);

let dir: string;
const running: { app: FastifyInstance; store: ItemStore }[] = [];

async function start(options: { project: ProjectConfig; file: string; port?: number }) {
  const store = new SqliteItemStore({ path: options.file, project: options.project.name });
  await store.init();
  const app = await buildTrackerApp({ store, project: options.project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 10_000, timeWindowMs: 60_000 }, expireEveryMs: 0, aliveEveryMs: 0 });
  const url = await app.listen({ port: options.port ?? 0, host: '127.0.0.1' });
  const entry = { app, store };
  running.push(entry);
  return { url, app, store, stop: async () => { await app.close(); await store.close(); running.splice(running.indexOf(entry), 1); } };
}

const client = (base: string, token?: string, attempts = 2) => new TrackerClient({ baseUrl: base, clientVersion: VERSION, token, retry: { maxAttempts: attempts, baseDelayMs: 50, maxDelayMs: 200 } });

async function post(base: string, route: string, token: string, body: string) {
  const res = await request(`${base}${route}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-lifeboat-version': VERSION }, body });
  return { status: res.statusCode, json: (await res.body.json().catch(() => undefined)) as { error?: string; message?: string } | undefined };
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-media-api-'));
});

afterAll(async () => {
  for (const { app, store } of [...running]) {
    await app.close();
    await store.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('media reports over HTTP (issue 13)', () => {
  it('deduplicates reports across nodes, hands the URLs out as a media item after the post items, and honours --only', async () => {
    const project = parseProject({ name: 'media-a', profile: 'demo', media: { item_size: 10 } });
    const t = await start({ project, file: path.join(dir, 'a.sqlite') });
    await t.store.seed(packItems(r(1, 20), 10));
    const [a, b] = [client(t.url), client(t.url)];
    await a.register('alice');
    await b.register('bob');
    const ia = (await a.claim({ only: 'posts' }))!;
    const ib = (await b.claim())!;
    expect([ia.kind, ib.kind]).toEqual(['posts', 'posts']);
    expect(ia.media).toEqual({ collect: true, inline: [], hosts: ['127.0.0.1'] });
    const shared = ['http://127.0.0.1:8080/avatars/1.png', 'HTTP://127.0.0.1:8080/avatars/2.png#x'];
    expect((await a.heartbeat(ia.leaseId, r(1, 10), [...shared, 'http://127.0.0.1:8080/v/1.mp4'])).mediaQueued).toBe(3);
    expect((await b.heartbeat(ib.leaseId, r(11, 20), ['http://127.0.0.1:8080/avatars/2.png', ...shared])).mediaQueued).toBe(0);
    expect(await t.store.mediaCounts()).toEqual({ urls: 3, done: 0, pending: 3, failed: 0 });
    expect(await a.tryClaim({ only: 'posts' })).toMatchObject({ kind: 'later' });
    const media = (await a.claim({ only: 'media' }))!;
    expect(media.kind).toBe('media');
    expect(media.urls!.map((u) => u.url)).toEqual(['http://127.0.0.1:8080/avatars/1.png', 'http://127.0.0.1:8080/avatars/2.png']);
    const video = (await b.claim({ only: 'media' }))!;
    expect(video.urls!.map((u) => u.url)).toEqual(['http://127.0.0.1:8080/v/1.mp4']);
    await a.done(ia.leaseId, { counts: { archived: 10, missing: 0, gone: 0, restricted: 0, failed: 0 }, bytes: 1, warcs: [] });
    expect(await a.tryClaim({ only: 'posts' })).toMatchObject({ kind: 'later' }); // b's post item is still leased
  });

  it('refuses a report with any URL off the media hosts, not http(s), with credentials, too long or too many, and stores none of it', async () => {
    const project = parseProject({ name: 'media-b', profile: 'demo' });
    const t = await start({ project, file: path.join(dir, 'b.sqlite') });
    await t.store.seed(packItems(r(1, 10), 10));
    const a = client(t.url);
    const { token } = await a.register('alice');
    const item = (await a.claim())!;
    const ok = 'http://127.0.0.1:8080/ok.png';
    const refused = async (media: unknown, status = 400) => {
      const res = await post(t.url, '/api/v1/heartbeat', token, JSON.stringify({ lease_id: item.leaseId, finished: [[1, 5]], media }));
      expect(res.status, JSON.stringify(media).slice(0, 100)).toBe(status);
      return res.json;
    };
    expect((await refused([ok, 'http://127.0.0.2:8080/canary.png']))!.message).toContain('127.0.0.2');
    expect((await refused([ok, 'http://evil.example/x.png']))!.error).toBe('E_MEDIA_SCOPE');
    expect((await refused(['ftp://127.0.0.1/x.png']))!.message).toContain('ftp:');
    expect((await refused(['javascript:alert(1)']))!.message).toContain('media[0]');
    expect((await refused(['/relative.png']))!.message).toContain('not an absolute URL');
    expect((await refused(['http://user:pw@127.0.0.1/x.png']))!.message).toContain('credentials');
    await refused([`http://127.0.0.1/${'a'.repeat(2100)}`]);
    await refused(Array.from({ length: 501 }, (_, i) => `http://127.0.0.1/${i}.png`));
    await refused([42]);
    await refused(Array.from({ length: 400 }, (_, i) => `http://127.0.0.1/${'x'.repeat(200)}/${i}.png`), 413);
    expect(await t.store.mediaCounts()).toEqual({ urls: 0, done: 0, pending: 0, failed: 0 });
    // Nor were the finished IDs sent with a refused report recorded.
    expect((await a.heartbeat(item.leaseId, new RangeSet())).remaining.toJSON()).toEqual([[1, 10]]);
    // The client says which URL, and the node can go on.
    const err = await a.heartbeat(item.leaseId, r(1, 5), ['http://127.0.0.2/x.png']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrackerRequestError);
    expect((await a.heartbeat(item.leaseId, r(1, 5), [ok])).mediaQueued).toBe(1);
  });

  it('refuses media reports when the project fetches media inline (media.collect: false)', async () => {
    const project = parseProject({ name: 'media-c', profile: 'demo', media: { collect: false } });
    const t = await start({ project, file: path.join(dir, 'c.sqlite') });
    await t.store.seed(packItems(r(1, 10), 10));
    const a = client(t.url);
    await a.register('alice');
    const item = (await a.claim())!;
    expect(item.media.collect).toBe(false);
    await expect(a.heartbeat(item.leaseId, r(1, 5), ['http://127.0.0.1:8080/a.png'])).rejects.toThrow(/does not collect media/);
  });

  it('a report in flight while the tracker restarts lands once (the client retries; the replay adds nothing)', async () => {
    const project = parseProject({ name: 'media-d', profile: 'demo' });
    const file = path.join(dir, 'd.sqlite');
    const first = await start({ project, file });
    const port = Number(new URL(first.url).port);
    await first.store.seed(packItems(r(1, 10), 10));
    const a = client(first.url, undefined, 30);
    await a.register('alice');
    const item = (await a.claim())!;
    await first.stop();
    const urls = Array.from({ length: 50 }, (_, i) => `http://127.0.0.1:8080/m/${i}.jpg`);
    const inFlight = a.heartbeat(item.leaseId, r(1, 10), urls);
    await new Promise((ok) => setTimeout(ok, 300));
    const second = await start({ project, file, port });
    expect((await inFlight).mediaQueued).toBe(50);
    expect((await a.heartbeat(item.leaseId, r(1, 10), urls)).mediaQueued).toBe(0);
    expect(await second.store.mediaCounts()).toMatchObject({ urls: 50, pending: 50 });
  });

  it('describes the media report and --only in /openapi.json', async () => {
    const project = parseProject({ name: 'media-e', profile: 'demo' });
    const t = await start({ project, file: path.join(dir, 'e.sqlite') });
    const doc = (await (await request(`${t.url}/openapi.json`)).body.json()) as any;
    const hb = doc.paths['/api/v1/heartbeat'].post.requestBody.content['application/json'].schema;
    expect(hb.properties.media.maxItems).toBe(500);
    expect(doc.paths['/api/v1/claim'].post.requestBody.content['application/json'].schema.properties.only.enum).toEqual(['posts', 'media']);
  });
});
