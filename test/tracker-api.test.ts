import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../config/logger.js';
import { RangeSet } from '../config/id-ranges.js';
import { runNode } from '../node/loop.js';
import { TrackerClient } from '../tracker/client/client.js';
import { TrackerRequestError, TrackerUnavailableError } from '../tracker/client/errors.js';
import { type ItemStore, packItems } from '../tracker/store/item-store.js';
import { parseProject } from '../tracker/store/project.js';
import { buildTrackerApp, listRoutes } from '../tracker/server/server.js';
import { hashToken } from '../tracker/server/routes.js';
import { SqliteItemStore } from '../tracker/store/sqlite-store.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const VERSION = '0.1.0';
const project = parseProject({ name: 'api-test', profile: 'demo', item_size: 100, lease_secs: 60, min_client_version: VERSION });
const stats = { counts: { archived: 90, missing: 8, gone: 1, restricted: 1, failed: 0 }, bytes: 12_345, warcs: [{ name: 'demo-1.warc.gz', size: 12_345, sha256: 'b'.repeat(64) }] };

let dir: string;
let store: ItemStore;
let app: FastifyInstance;
let base: string;
let clock = 1_700_000_000_000;

interface CallOptions {
  token?: string;
  version?: string | null;
  body?: unknown;
  rawBody?: string;
}

async function call(method: 'GET' | 'POST', url: string, options: CallOptions = {}) {
  const headers: Record<string, string> = {};
  if (options.version !== null) headers['x-lifeboat-version'] = options.version ?? VERSION;
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}${url}`, { method, headers, body });
  const text = await res.body.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, json, text, headers: res.headers };
}

const snapshot = async () => (await call('GET', '/api/v1/stats')).json;
const client = (token?: string) => new TrackerClient({ baseUrl: base, clientVersion: VERSION, token, retry: { maxAttempts: 2, baseDelayMs: 1 } });

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-api-'));
  store = new SqliteItemStore({ path: path.join(dir, 't.sqlite'), project: project.name });
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
  });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  clock += 3_600_000;
});

describe('tracker API over HTTP', () => {
  it('runs register → claim → heartbeat → done with the client, and says done when empty', async () => {
    const seeded = await call('POST', '/api/v1/admin/seed', { token: ADMIN, body: { ranges: '1-150\n# comment\n1000-1049\n', item_size: 100 } });
    expect(seeded.json).toEqual({ items: 2, ids: 200, skipped: 0 });
    // Seeding the same ranges again adds nothing (issue 10 §5).
    expect((await call('POST', '/api/v1/admin/seed', { token: ADMIN, body: { ranges: '1-150', item_size: 100 } })).json).toEqual({ items: 0, ids: 0, skipped: 150 });
    const node = client();
    const reg = await node.register('alice');
    expect(reg.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const item = await node.claim();
    expect(item).toMatchObject({ id: expect.any(Number), profile: 'demo', leaseSecs: 60, upload: null });
    expect(item!.ranges.toJSON()).toEqual([[1, 100]]);
    const hb = await node.heartbeat(item!.leaseId, new RangeSet([{ start: 1, end: 30 }]));
    expect(hb.remaining.toJSON()).toEqual([[31, 100]]);
    expect(hb.leaseExpiresAt.getTime()).toBe(clock + 60_000);
    expect(await node.done(item!.leaseId, stats)).toEqual({ duplicate: false });
    expect(await node.done(item!.leaseId, stats)).toEqual({ duplicate: true });
    const second = await node.claim();
    expect(second!.ranges.toJSON()).toEqual([[101, 150], [1000, 1049]]);
    const rel = await node.release(second!.leaseId, new RangeSet([{ start: 101, end: 110 }]));
    expect(rel.remaining.toJSON()).toEqual([[111, 150], [1000, 1049]]);
    const third = await node.claim();
    expect(await node.done(third!.leaseId, stats)).toEqual({ duplicate: false });
    expect(await node.claim()).toBeNull();
    const s = await snapshot();
    expect(s).toMatchObject({ project: 'api-test', ids: { total: 200, done: 200 }, progress: 1, bytes: 24_690 });
    expect(s.nodes).toEqual([{ nick: 'alice', items: 2, ids: 200, bytes: 24_690, rate_ids_per_sec: expect.any(Number), refused: { media: 0, claims: 0, stalled_leases: 0 } }]);
  });

  it('hands a dead node’s remainder to the next node and refuses the stale lease', async () => {
    await call('POST', '/api/v1/admin/seed', { token: ADMIN, body: { ranges: '5000-5099' } });
    const a = client();
    await a.register('a-node');
    const b = client();
    await b.register('b-node');
    const item = (await a.claim())!;
    await a.heartbeat(item.leaseId, new RangeSet([{ start: 5000, end: 5049 }]));
    const later = await b.tryClaim();
    expect(later).toEqual({ kind: 'later', retryAfterSecs: 60 });
    clock += 61_000;
    const taken = (await b.claim())!;
    expect(taken.ranges.toJSON()).toEqual([[5050, 5099]]);
    const err = await a.done(item.leaseId, stats).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrackerRequestError);
    expect(err).toMatchObject({ status: 409, code: 'E_LEASE_STALE', policy: 'give-up' });
    await b.done(taken.leaseId, stats);
    const metrics = await call('GET', '/metrics');
    expect(metrics.text).toMatch(/lifeboat_tracker_expired_leases_total\{project="api-test"\} [1-9]/);
    expect(metrics.text).toMatch(/lifeboat_tracker_claims_total\{project="api-test",result="later"\} [1-9]/);
    expect(metrics.text).toContain('lifeboat_tracker_active_nodes{project="api-test"}');
    expect(metrics.text).toMatch(/lifeboat_tracker_eta_seconds\{project="api-test"\} (\d+|NaN)\n/);
  });

  it('rejects a bad token, an old or missing version, a banned nick — and changes nothing', async () => {
    await call('POST', '/api/v1/admin/seed', { token: ADMIN, body: { ranges: '9000-9099' } });
    const m = await call('POST', '/api/v1/register', { body: { nick: 'mallory' } });
    expect(m.status).toBe(200);
    const before = await snapshot();
    expect((await call('POST', '/api/v1/claim', { token: 'not-a-token', body: {} })).status).toBe(401);
    expect((await call('POST', '/api/v1/claim', { body: {} })).status).toBe(401);
    const old = await call('POST', '/api/v1/claim', { token: m.json.token, version: '0.0.9', body: {} });
    expect(old.status).toBe(426);
    expect(old.json.message).toMatch(/0\.0\.9 is older than this project's minimum 0\.1\.0/);
    expect((await call('POST', '/api/v1/register', { version: null, body: { nick: 'x' } })).status).toBe(426);
    expect((await call('POST', '/api/v1/admin/ban', { token: m.json.token, body: { nick: 'alice' } })).status).toBe(401);
    expect(await snapshot()).toEqual(before);

    expect((await call('POST', '/api/v1/admin/ban', { token: ADMIN, body: { nick: 'mallory', reason: 'test' } })).json).toEqual({ ok: true, released_items: 0 });
    const afterBan = await snapshot();
    const banned = await call('POST', '/api/v1/claim', { token: m.json.token, body: {} });
    expect(banned.status).toBe(403);
    expect(banned.json.error).toBe('E_BANNED');
    expect((await call('POST', '/api/v1/register', { body: { nick: 'mallory' } })).status).toBe(403);
    expect(await snapshot()).toEqual(afterBan);

    await call('POST', '/api/v1/admin/min-version', { token: ADMIN, body: { version: '0.2.0' } });
    expect((await call('POST', '/api/v1/register', { body: { nick: 'newbie' } })).status).toBe(426);
    await call('POST', '/api/v1/admin/min-version', { token: ADMIN, body: { version: '0.1.0' } });
    await store.setSetting('min_client_version', '0.1.0');
  });

  it('a nick has one owner: a second node cannot register it, and a ban hits only that node (issue 11 §5)', async () => {
    await call('POST', '/api/v1/admin/seed', { token: ADMIN, body: { ranges: '11000-11199' } });
    const owner = await call('POST', '/api/v1/register', { body: { nick: 'carol' } });
    expect(owner.status).toBe(200);
    const thief = await call('POST', '/api/v1/register', { body: { nick: 'carol' } });
    expect(thief.status).toBe(409);
    expect(thief.json).toEqual({ error: 'E_NICK_TAKEN', message: expect.stringMatching(/nick "carol" is already taken in this project by another node/) });
    expect(thief.json.token).toBeUndefined();
    const bystander = await call('POST', '/api/v1/register', { body: { nick: 'dora' } });
    expect((await call('POST', '/api/v1/claim', { token: bystander.json.token, body: {} })).status).toBe(200);
    expect((await call('POST', '/api/v1/admin/ban', { token: ADMIN, body: { nick: 'carol' } })).status).toBe(200);
    expect((await call('POST', '/api/v1/claim', { token: owner.json.token, body: {} })).status).toBe(403);
    expect((await call('POST', '/api/v1/claim', { token: bystander.json.token, body: {} })).status).toBe(200);
    const client = new TrackerClient({ baseUrl: base, clientVersion: VERSION, retry: { maxAttempts: 2, baseDelayMs: 1 } });
    await expect(client.register('dora')).rejects.toMatchObject({ status: 409, code: 'E_NICK_TAKEN' });
    // A node that chose its token registers again after a crash and gets the same node back; another token does not.
    const token = 'T'.repeat(43);
    const first = await call('POST', '/api/v1/register', { body: { nick: 'erin', token } });
    const again = await call('POST', '/api/v1/register', { body: { nick: 'erin', token } });
    expect(first.status).toBe(200);
    expect(again.json).toEqual(first.json);
    expect((await call('POST', '/api/v1/register', { body: { nick: 'erin', token: 'U'.repeat(43) } })).json.error).toBe('E_NICK_TAKEN');
    expect((await call('POST', '/api/v1/register', { body: { nick: 'erin', token: 'short' } })).status).toBe(400);
  });

  it('refuses a byte report above the per-item maximum, so leaderboard totals stay exact (issue 11 §5)', async () => {
    await call('POST', '/api/v1/admin/seed', { token: ADMIN, body: { ranges: '12000-12199', item_size: 100 } });
    const reg = await call('POST', '/api/v1/register', { body: { nick: 'boaster' } });
    const token = reg.json.token as string;
    const item = (await call('POST', '/api/v1/claim', { token, body: {} })).json.item;
    const before = await snapshot();
    const done = (bytes: number) =>
      call('POST', '/api/v1/done', { token, body: { lease_id: item.lease_id, stats: { ...stats, bytes, warcs: [{ ...stats.warcs[0], size: Math.min(bytes, 2 ** 40) }] } } });
    for (const bytes of [Number.MAX_SAFE_INTEGER, 2 ** 40 + 1]) {
      const res = await done(bytes);
      expect(res.status, String(bytes)).toBe(400);
      expect(res.json.message).toMatch(/stats\.bytes: at most 1099511627776 bytes \(1 TiB\) per item/);
    }
    expect(await snapshot()).toEqual(before);
    expect((await done(2 ** 40)).status).toBe(200);
    const after = await snapshot();
    expect(after.bytes).toBe(before.bytes + 2 ** 40);
    expect(Number.isSafeInteger(after.bytes)).toBe(true);
  });

  it('rejects oversized, malformed and unexpected bodies with 4xx and changes nothing', async () => {
    const reg = await call('POST', '/api/v1/register', { body: { nick: 'bodies' } });
    const token = reg.json.token as string;
    const before = await snapshot();
    const huge = { lease_id: 'x', finished: Array.from({ length: 9000 }, (_, i) => [i * 10, i * 10 + 1]) };
    const tooBig = await call('POST', '/api/v1/heartbeat', { token, body: huge });
    expect(tooBig.status).toBe(413);
    expect(tooBig.json.message).toMatch(/too large/);
    const bad = await call('POST', '/api/v1/heartbeat', { token, rawBody: '{"lease_id": "x", "finished": [[1,' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toBeTypeOf('string');
    const extra = await call('POST', '/api/v1/claim', { token, body: { greedy: true } });
    expect(extra.status).toBe(400);
    expect(extra.json.message).toMatch(/greedy/);
    const backwards = await call('POST', '/api/v1/heartbeat', { token, body: { lease_id: 'x', finished: [[10, 1]] } });
    expect(backwards.status).toBe(400);
    const badStats = await call('POST', '/api/v1/done', { token, body: { lease_id: 'x', stats: { ...stats, bytes: -1 } } });
    expect(badStats.status).toBe(400);
    expect((await call('POST', '/api/v1/done', { token, body: { lease_id: 'nope', stats } })).status).toBe(409);
    expect(await snapshot()).toEqual(before);
  });

  it('rejects injection attempts in nicks with 400 and changes nothing', async () => {
    const before = await snapshot();
    const evil = [
      "robert'); DROP TABLE nodes;--",
      "x' OR '1'='1",
      '"; DELETE FROM items; --',
      '<script>alert(1)</script>',
      'a'.repeat(33),
      '',
      'nick with spaces',
      'ünïcödé',
      '../../etc/passwd',
    ];
    for (const nick of evil) {
      const res = await call('POST', '/api/v1/register', { body: { nick } });
      expect(res.status, nick).toBe(400);
      expect((await call('POST', '/api/v1/admin/ban', { token: ADMIN, body: { nick } })).status, nick).toBe(400);
    }
    expect((await call('POST', '/api/v1/register', { body: { nick: 42 } })).status).toBe(400);
    expect((await call('POST', '/api/v1/register', { body: { nick: ['a'] } })).status).toBe(400);
    expect(await snapshot()).toEqual(before);
    // The tables are intact and the store still works.
    expect((await call('POST', '/api/v1/register', { body: { nick: 'after.the_attack-1' } })).status).toBe(200);
  });

  it('describes every route in /openapi.json', async () => {
    const doc = (await call('GET', '/openapi.json')).json;
    expect(doc.openapi).toBe('3.1.0');
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    expect(documented.sort()).toEqual(listRoutes(app).sort());
    expect(documented.length).toBeGreaterThanOrEqual(16);
    expect(doc.paths['/api/v1/heartbeat'].post.requestBody.content['application/json'].schema.additionalProperties).toBe(false);
  });

  it('serves the leaderboard page and 404s unknown routes as JSON', async () => {
    const page = await call('GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.text).toContain('/api/v1/stats');
    const missing = await call('GET', '/api/v1/nothing');
    expect(missing.status).toBe(404);
    expect(missing.json.error).toBe('E_NOT_FOUND');
  });
});

describe('rate limit and client retries', () => {
  it('answers 429 once a token exceeds its rate', async () => {
    const limited = await buildTrackerApp({ store, project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 5, timeWindowMs: 60_000, perAddressMax: 100 }, expireEveryMs: 0 });
    const url = await limited.listen({ port: 0, host: '127.0.0.1' });
    try {
      const reg = await request(`${url}/api/v1/register`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-lifeboat-version': VERSION }, body: '{"nick":"fast"}' });
      const { token } = (await reg.body.json()) as { token: string };
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) {
        const res = await request(`${url}/api/v1/claim`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-lifeboat-version': VERSION }, body: '{}' });
        statuses.push(res.statusCode);
        const body = (await res.body.json()) as { error?: string };
        if (res.statusCode === 429) {
          expect(body.error).toBe('E_RATE_LIMIT');
          expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
        }
      }
      expect(statuses.slice(0, 5).every((s) => s === 200)).toBe(true);
      expect(statuses.slice(5)).toEqual([429, 429]);
      // Another token has its own budget.
      const other = await request(`${url}/api/v1/claim`, { method: 'POST', headers: { authorization: 'Bearer someone-else', 'x-lifeboat-version': VERSION } });
      expect(other.statusCode).toBe(401);
      await other.body.dump();
    } finally {
      await limited.close();
    }
  });

  it('caps all tokens of one address together: five registrations do not buy five budgets (issue 11 §5)', async () => {
    const limited = await buildTrackerApp({ store, project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 10, timeWindowMs: 60_000 }, expireEveryMs: 0 });
    const url = await limited.listen({ port: 0, host: '127.0.0.1' });
    const post = async (path: string, body: string, token?: string) => {
      const res = await request(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-lifeboat-version': VERSION, ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body,
      });
      return { status: res.statusCode, json: (await res.body.json()) as { token?: string; error?: string; message?: string } };
    };
    try {
      const tokens: string[] = [];
      for (let i = 0; i < 5; i++) {
        const reg = await post('/api/v1/register', JSON.stringify({ nick: `multi-${i}` }));
        expect(reg.status).toBe(200);
        tokens.push(reg.json.token!);
      }
      const answers = [];
      for (const token of tokens) for (let i = 0; i < 10; i++) answers.push(await post('/api/v1/heartbeat', '{"lease_id":"none","finished":[]}', token));
      // 10 requests per window for the address: 5 registrations + 5 more, whatever the token.
      expect(answers.filter((a) => a.status !== 429)).toHaveLength(5);
      expect(answers.at(-1)!.json).toMatchObject({ error: 'E_RATE_LIMIT', message: expect.stringMatching(/for your address \(all its tokens together\)/) });
      // The organisers are not locked out by their volunteers' address.
      const admin = await request(`${url}/api/v1/stats`, { headers: { authorization: `Bearer ${ADMIN}` } });
      expect(admin.statusCode).toBe(200);
      await admin.body.dump();
    } finally {
      await limited.close();
    }
  });

  it('limits registrations per address (issue 11 §5)', async () => {
    const limited = await buildTrackerApp({ store, project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000, registrationsPerHour: 3 }, expireEveryMs: 0 });
    const url = await limited.listen({ port: 0, host: '127.0.0.1' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await request(`${url}/api/v1/register`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-lifeboat-version': VERSION }, body: JSON.stringify({ nick: `reg-${i}` }) });
        statuses.push(res.statusCode);
        const body = (await res.body.json()) as { error?: string; message?: string };
        if (res.statusCode === 429) {
          expect(body).toMatchObject({ error: 'E_RATE_LIMIT', message: expect.stringMatching(/too many registrations from your address \(3 per 60 min\)/) });
          expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
        }
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
    } finally {
      await limited.close();
    }
  });

  it('a node killed between registering and saving the answer gets its nick back on restart (issue 11 §5)', async () => {
    const emptyStore = new SqliteItemStore({ path: path.join(dir, 'phoenix.sqlite'), project: project.name });
    await emptyStore.init();
    const empty = await buildTrackerApp({ store: emptyStore, project, adminToken: ADMIN, leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000 }, expireEveryMs: 0 });
    const url = await empty.listen({ port: 0, host: '127.0.0.1' });
    try {
      // What the node saved before asking, and the registration that reached the tracker before the kill.
      const token = 'P'.repeat(43);
      const outDir = path.join(dir, 'phoenix');
      mkdirSync(outDir);
      writeFileSync(path.join(outDir, 'node.json'), JSON.stringify({ tracker: url, nick: 'phoenix', token, registered: false }));
      const landed = await new TrackerClient({ baseUrl: url, clientVersion: VERSION }).register('phoenix', { token });
      const result = await runNode({ trackerUrl: url, nick: 'phoenix', outDir, logger: silentLogger, nodeName: 'phoenix', exitWhenDone: true });
      expect(result).toMatchObject({ items: 0, interrupted: false });
      const saved = JSON.parse(readFileSync(path.join(outDir, 'node.json'), 'utf8')) as { token: string; registered?: boolean };
      expect(saved).toMatchObject({ token });
      expect(saved.registered).toBeUndefined();
      expect(await emptyStore.authenticate(hashToken(token))).toEqual({ id: landed.nodeId, nick: 'phoenix', banned: false });
    } finally {
      await empty.close();
      await emptyStore.close();
    }
  });

  it('backs off while the tracker is unreachable, then gives up with a retry-policy error', async () => {
    const waits: number[] = [];
    const node = new TrackerClient({
      baseUrl: 'http://127.0.0.1:9', // discard port: connection refused
      clientVersion: VERSION,
      retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 250 },
      sleep: async (ms) => void waits.push(ms),
    });
    const err = await node.register('alice').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrackerUnavailableError);
    expect(err).toMatchObject({ policy: 'retry', code: 'E_TRACKER_UNAVAILABLE' });
    expect(waits).toHaveLength(3);
    expect(waits[0]).toBeGreaterThanOrEqual(50);
    expect(waits[2]).toBeLessThanOrEqual(250);
  });

  it('waits through "later" answers before claiming', async () => {
    await store.seed(packItems(new RangeSet([{ start: 70_000, end: 70_009 }]), 10));
    const holder = client();
    await holder.register('holder');
    // Drain everything else so only this item is left, then hold it.
    let held;
    for (;;) {
      const it = await holder.claim();
      if (!it) throw new Error('ran out');
      if (it.ranges.min === 70_000) {
        held = it;
        break;
      }
      await holder.done(it.leaseId, stats);
    }
    const waits: number[] = [];
    const waiter = new TrackerClient({
      baseUrl: base,
      clientVersion: VERSION,
      sleep: async (ms) => {
        waits.push(ms);
        if (waits.length === 2) await holder.release(held.leaseId);
      },
    });
    await waiter.register('waiter');
    const got = await waiter.claim();
    expect(waits).toEqual([60_000, 60_000]);
    expect(got!.ranges.toJSON()).toEqual([[70_000, 70_009]]);
  });
});

describe('tracker restart after downtime', () => {
  it('gives live leases the time the tracker was away, so their nodes keep them; a short restart changes nothing', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-restart-'));
    const s = new SqliteItemStore({ path: path.join(tmp, 't.sqlite'), project: project.name });
    let t = 1_800_000_000_000;
    const build = () =>
      buildTrackerApp({ store: s, project, adminToken: ADMIN, now: () => t, leaseMs: 60_000, rateLimit: { max: 1000, timeWindowMs: 60_000 }, expireEveryMs: 0, aliveEveryMs: 1000 });
    try {
      await s.init();
      await s.seed(packItems(new RangeSet([{ start: 1, end: 20 }]), 10));
      const node = await s.registerNode({ nick: 'steady', tokenHash: 'h1', now: t });
      const other = await s.registerNode({ nick: 'eager', tokenHash: 'h2', now: t });
      const first = await build();
      const claimed = await s.claim({ nodeId: node.id, now: t, leaseMs: 60_000 });
      if (claimed.kind !== 'lease') throw new Error('expected a lease');
      t += 30_000;
      await first.close(); // a clean stop records when the tracker went away
      t += 10 * 60_000; // away for 10 minutes, far longer than the 60 s lease
      const second = await build();
      // The lease has its remaining 30 s back: another node cannot take the item...
      const meanwhile = await s.claim({ nodeId: other.id, now: t + 1000, leaseMs: 60_000 });
      expect(meanwhile.kind === 'lease' && meanwhile.lease.itemId).not.toBe(claimed.lease.itemId);
      // ...and its own node's heartbeat is accepted.
      const beatAt = t + 2000;
      const hb = await s.heartbeat({ nodeId: node.id, leaseId: claimed.lease.leaseId, finished: new RangeSet([{ start: 1, end: 5 }]), now: beatAt, leaseMs: 60_000 });
      expect(hb.leaseExpiresAt).toBe(beatAt + 60_000);
      // A restart within twice the marking interval is not downtime: nothing is extended.
      t = beatAt + 1500;
      await second.close();
      t += 1000;
      const third = await build();
      await third.close();
      await expect(
        s.heartbeat({ nodeId: node.id, leaseId: claimed.lease.leaseId, finished: new RangeSet(), now: beatAt + 60_001, leaseMs: 60_000 }),
      ).rejects.toThrow(/expired/);
    } finally {
      await s.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
