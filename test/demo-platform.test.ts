import { gunzipSync } from 'node:zlib';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoContent, startDemoPlatform, type ChaosKind, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { DemoServerUsageError, parseDemoServerArgs } from '../scripts/demo/demo-server.js';
import {
  DISCOURSE_FORBIDDEN,
  DISCOURSE_NOT_FOUND,
  hackerNewsItem,
  startDiscourseFixture,
  startHackerNewsFixture,
  startLemmyFixture,
} from './fixtures/api-servers.js';
import { startCanary, type Canary } from './fixtures/canary.js';

interface Got {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

let agent: Agent;
beforeAll(() => {
  agent = new Agent({ connections: 16 });
});
afterAll(async () => {
  await agent.close();
});

async function get(url: string, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<Got> {
  // AbortSignal.timeout is exact; undici's own headers/body timeouts run on a coarse clock.
  const res = await request(url, { dispatcher: agent, headers, signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}

const STATUS_CODE = { public: 200, missing: 404, gone: 410, private: 403 } as const;

describe('demo platform: content and ground truth', () => {
  let platform: DemoPlatform;
  let canary: Canary;
  beforeAll(async () => {
    canary = await startCanary({ host: '127.0.0.2' });
    platform = await startDemoPlatform({ posts: 400, seed: 7, mediaBaseUrl: canary.url });
  });
  afterAll(async () => {
    await platform.close();
    await canary.close();
  });

  it('serves every post exactly as the ground truth says, never a private body', async () => {
    const seen = { public: 0, missing: 0, gone: 0, private: 0 };
    for (let id = 1; id <= 400; id++) {
      const truth = platform.post(id);
      const res = await get(`${platform.url}/api/v1/posts/${id}`);
      seen[truth.status]++;
      expect(res.status, `id ${id}`).toBe(STATUS_CODE[truth.status]);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(res.headers['content-encoding']).toBeUndefined();
      const body = JSON.parse(res.body.toString('utf8')) as unknown;
      if (truth.status === 'public') expect(body).toEqual(truth.json);
      else expect(body).toEqual({ error: { missing: 'not found', gone: 'gone', private: 'private' }[truth.status] });
      if (truth.status === 'private') {
        expect(truth.secret).toBe(`PRIVATE-${id}-SECRET`);
        expect(res.body.toString()).not.toContain('SECRET');
        const page = await get(`${platform.url}/p/${id}`);
        expect(page.status).toBe(403);
        expect(page.body.toString()).not.toContain('SECRET');
      }
    }
    expect(seen.public).toBeGreaterThan(300);
    expect(seen.missing).toBeGreaterThan(5);
    expect(seen.gone).toBeGreaterThan(0);
    expect(seen.private).toBeGreaterThan(0);
    expect(platform.post(401).status).toBe('missing');
    expect((await get(`${platform.url}/api/v1/posts/401`)).status).toBe(404);
    expect((await get(`${platform.url}/api/v1/posts/007`)).status).toBe(404);
  });

  it('has the documented status mix and runs of consecutive missing IDs (pure, 100k IDs)', () => {
    const c = demoContent({ url: 'http://127.0.0.1:1', posts: 100_000 });
    const counts = { public: 0, missing: 0, gone: 0, private: 0 };
    let run = 0;
    let gaps = 0;
    for (let id = 1; id <= 100_000; id++) {
      const s = c.post(id).status;
      counts[s]++;
      if (s === 'missing') run++;
      else {
        if (run >= 3) gaps++;
        run = 0;
      }
    }
    expect(counts.missing / 1e5).toBeGreaterThan(0.05);
    expect(counts.missing / 1e5).toBeLessThan(0.07);
    expect(counts.gone / 1e5).toBeCloseTo(0.02, 2);
    expect(counts.private / 1e5).toBeCloseTo(0.02, 2);
    expect(gaps).toBeGreaterThan(100);
    expect(c.privateText(c.post(7).status === 'private' ? 7 : 8)).toMatch(/PRIVATE-\d+-SECRET/);
    // Deterministic: same seed, same content; another seed, other content.
    expect(demoContent({ url: 'http://x', seed: 1 }).post(42)).toEqual(demoContent({ url: 'http://x', seed: 1 }).post(42));
    const texts = (seed: number) => [1, 2, 3, 4, 5, 6].map((id) => JSON.stringify(demoContent({ url: 'http://x', seed }).post(id)));
    expect(texts(1)).not.toEqual(texts(2));
  });

  it('gzips JSON when asked, storing the same document', async () => {
    const id = [...Array(50).keys()].map((i) => i + 1).find((i) => platform.post(i).status === 'public')!;
    const res = await get(`${platform.url}/api/v1/posts/${id}`, { 'accept-encoding': 'gzip, deflate, br' });
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(res.headers['vary']).toBe('Accept-Encoding');
    expect(Number(res.headers['content-length'])).toBe(res.body.length);
    expect(res.body.subarray(0, 2).toString('hex')).toBe('1f8b');
    expect(JSON.parse(gunzipSync(res.body).toString('utf8'))).toEqual(platform.post(id).json);
    const refused = await get(`${platform.url}/api/v1/posts/${id}`, { 'accept-encoding': 'gzip;q=0, identity' });
    expect(refused.headers['content-encoding']).toBeUndefined();
  });

  it('serves media bytes equal to mediaBody(), with Content-Length, strong ETag and magic headers', async () => {
    let checked = 0;
    let relative = 0;
    let external = 0;
    for (let id = 1; id <= 120; id++) {
      const truth = platform.post(id);
      if (truth.status !== 'public') continue;
      const json = truth.json as { media: { url: string }[]; author: { avatar_url: string } };
      for (const u of [...json.media.map((m) => m.url), json.author.avatar_url]) if (u.startsWith('/')) relative++;
      for (const u of truth.mediaUrls) {
        expect(u).toMatch(/^http:\/\//);
        if (!u.startsWith(platform.url)) {
          expect(u.startsWith(canary.url)).toBe(true);
          external++;
          continue;
        }
        const path = new URL(u).pathname;
        const res = await get(u);
        expect(res.status).toBe(200);
        expect(res.body.equals(platform.mediaBody(path)!)).toBe(true);
        expect(Number(res.headers['content-length'])).toBe(res.body.length);
        expect(res.headers['etag']).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
        const magic = res.body.subarray(0, 4).toString('hex');
        if (path.endsWith('.jpg')) {
          expect(magic).toBe('ffd8ffe0');
          expect(res.body.length).toBeGreaterThanOrEqual(2048);
          expect(res.body.length).toBeLessThanOrEqual(40 * 1024);
        } else if (path.endsWith('.png')) expect(magic).toBe('89504e47');
        else {
          expect(res.body.subarray(4, 8).toString()).toBe('ftyp');
          expect(res.body.length).toBeGreaterThanOrEqual(200 * 1024);
          expect(res.body.length).toBeLessThanOrEqual(1500 * 1024);
        }
        const again = await get(u, { 'if-none-match': String(res.headers['etag']) });
        expect(again.status).toBe(304);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(50);
    expect(relative).toBeGreaterThan(10);
    expect(external).toBeGreaterThan(0);
    expect(canary.hits).toEqual([]);
    expect((await get(`${platform.url}/media/img/999999-0.jpg`)).status).toBe(404);
    expect((await get(`${platform.url}/media/avatar/nobody.png`)).status).toBe(404);
    expect(platform.mediaBody('/media/img/999999-0.jpg')).toBeUndefined();
  });

  it('lists public media URLs without duplicates, avatars shared across posts', () => {
    const all = platform.publicMediaUrls();
    expect(new Set(all).size).toBe(all.length);
    for (let id = 1; id <= 400; id++) for (const u of platform.post(id).mediaUrls) expect(all).toContain(u);
    const avatars = all.filter((u) => u.includes('/media/avatar/'));
    expect(avatars.length).toBeGreaterThan(20);
    expect(avatars.length).toBeLessThanOrEqual(50);
    expect(all.some((u) => u.includes('/media/video/'))).toBe(true);
  });

  it('serves the HTML page with text, media and avatar images, and the rendering script', async () => {
    const id = [...Array(100).keys()].map((i) => i + 1).find((i) => {
      const p = platform.post(i);
      return p.status === 'public' && (p.json as { media: unknown[] }).media.length >= 2;
    })!;
    const json = platform.post(id).json as { text: string; media: { type: string; url: string }[]; author: { avatar_url: string } };
    const res = await get(`${platform.url}/p/${id}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    const html = res.body.toString('utf8');
    expect(html).toContain(`<article class="post" data-id="${id}">`);
    const esc = json.text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
    expect(html).toContain(esc);
    expect(html).toContain(`<img class="avatar" src="${json.author.avatar_url}"`);
    for (const m of json.media.filter((x) => x.type === 'image')) expect(html).toContain(`<img class="media" src="${m.url}"`);
    expect(html).toContain('<script src="/static/app.js"></script>');
    expect(html).toContain('<div id="rendered"></div>');
    const js = await get(`${platform.url}/static/app.js`);
    expect(js.status).toBe(200);
    expect(js.body.toString()).toContain("'/api/v1/posts/'");
    const missing = [...Array(400).keys()].map((i) => i + 1).find((i) => platform.post(i).status === 'gone')!;
    expect((await get(`${platform.url}/p/${missing}`)).status).toBe(410);
  });

  it('answers latest, robots.txt and the admin trap', async () => {
    expect(JSON.parse((await get(`${platform.url}/api/v1/latest`)).body.toString())).toEqual({ max_id: 400 });
    expect((await get(`${platform.url}/robots.txt`)).body.toString()).toBe('User-agent: *\nDisallow: /admin/\n');
    const admin = await get(`${platform.url}/admin/users`);
    expect(admin.status).toBe(200);
    expect(admin.body.toString()).toContain('secret admin');
    expect(platform.stats.paths.get('/admin/users')).toBe(1);
    expect(platform.stats.byStatus[200]).toBeGreaterThan(100);
    expect(platform.stats.requests).toBeGreaterThan(400);
  });
});

describe('demo platform: Range, rate limit, chaos, close', () => {
  it('answers a Range request on a video with 206 and the right bytes', async () => {
    const platform = await startDemoPlatform({ posts: 300 });
    try {
      const url = platform.publicMediaUrls().find((u) => u.includes('/media/video/'))!;
      const full = platform.mediaBody(new URL(url).pathname)!;
      const head = await get(url);
      expect(head.headers['accept-ranges']).toBe('bytes');
      const part = await get(url, { range: 'bytes=100-1123' });
      expect(part.status).toBe(206);
      expect(part.headers['content-range']).toBe(`bytes 100-1123/${full.length}`);
      expect(part.headers['content-length']).toBe('1024');
      expect(part.body.equals(full.subarray(100, 1124))).toBe(true);
      const tail = await get(url, { range: 'bytes=-10' });
      expect(tail.body.equals(full.subarray(full.length - 10))).toBe(true);
      const open = await get(url, { range: `bytes=${full.length - 5}-` });
      expect(open.headers['content-range']).toBe(`bytes ${full.length - 5}-${full.length - 1}/${full.length}`);
      const bad = await get(url, { range: `bytes=${full.length}-` });
      expect(bad.status).toBe(416);
      expect(bad.headers['content-range']).toBe(`bytes */${full.length}`);
    } finally {
      await platform.close();
    }
  });

  it('rate-limits with 429 and Retry-After: 1 beyond the bucket', async () => {
    const platform = await startDemoPlatform({ posts: 50, rateLimit: { rps: 5, burst: 5 } });
    try {
      const results = await Promise.all(Array.from({ length: 20 }, () => get(`${platform.url}/api/v1/latest`)));
      const limited = results.filter((r) => r.status === 429);
      expect(limited.length).toBeGreaterThanOrEqual(10);
      expect(results.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(5);
      for (const r of limited) expect(r.headers['retry-after']).toBe('1');
      expect(platform.stats.rateLimited).toBe(limited.length);
      expect(platform.stats.byStatus[429]).toBe(limited.length);
      expect((await get(`${platform.url}/robots.txt`)).status).toBe(200);

      platform.setRateLimit({ rps: 1, burst: 1, retryAfter: false });
      const r2 = await Promise.all([1, 2, 3].map(() => get(`${platform.url}/api/v1/latest`)));
      const noHeader = r2.find((r) => r.status === 429)!;
      expect(noHeader.headers['retry-after']).toBeUndefined();

      platform.setRateLimit(undefined);
      const r3 = await Promise.all(Array.from({ length: 20 }, () => get(`${platform.url}/api/v1/latest`)));
      expect(r3.every((r) => r.status === 200)).toBe(true);
    } finally {
      await platform.close();
    }
  });

  it.each<ChaosKind[]>([['5xx'], ['reset'], ['short'], ['stall'], ['5xx', 'reset', 'stall', 'short']])(
    'chaos %j at rate 1.0 lets a retrying client through within 4 attempts',
    async (...kinds) => {
      const platform = await startDemoPlatform({ posts: 60, chaos: { rate: 1, kinds, stallMs: 800 } });
      try {
        const targets = [1, 2, 3, 4, 5, 6].map((id) => ({ id, truth: platform.post(id) }));
        targets.push({ id: 0, truth: { id: 0, status: 'public', mediaUrls: [] } });
        for (const { id, truth } of targets) {
          const url = id === 0 ? `${platform.url}${new URL(platform.publicMediaUrls()[0]!).pathname}` : `${platform.url}/api/v1/posts/${id}`;
          let ok: Got | undefined;
          let attempts = 0;
          const failures: string[] = [];
          while (!ok && attempts < 4) {
            attempts++;
            try {
              // A client timeout shorter than the stall, so a stall counts as a failure.
              const res = await get(url, {}, 300);
              if (res.status >= 500) failures.push(String(res.status));
              else ok = res;
            } catch (err) {
              failures.push((err as Error).name);
            }
          }
          expect(ok, `${url}: ${failures.join(', ')}`).toBeDefined();
          expect(attempts).toBe(4);
          expect(ok!.status).toBe(id === 0 ? 200 : STATUS_CODE[truth.status]);
          if (id === 0) expect(ok!.body.equals(platform.mediaBody(new URL(url).pathname)!)).toBe(true);
          else if (truth.status === 'public') expect(JSON.parse(ok!.body.toString())).toEqual(truth.json);
        }
        expect(platform.stats.chaos).toBe(targets.length * 3);
        expect((await get(`${platform.url}/robots.txt`)).status).toBe(200);
        platform.setChaos(undefined);
        expect((await get(`${platform.url}/api/v1/latest`)).status).toBe(200);
      } finally {
        await platform.close();
      }
    },
  );

  it('close() does not hang on stalled sockets', async () => {
    const platform = await startDemoPlatform({ posts: 10, chaos: { rate: 1, kinds: ['stall'], stallMs: 60_000 } });
    const client = new Agent();
    const pending = [1, 2, 3].map((id) =>
      request(`${platform.url}/api/v1/posts/${id}`, { dispatcher: client }).then(
        (r) => r.body.arrayBuffer(),
        (err: unknown) => err,
      ),
    );
    while (platform.stats.chaos < 3) await new Promise((r) => setTimeout(r, 10));
    const started = Date.now();
    await platform.close();
    expect(Date.now() - started).toBeLessThan(2000);
    const outcomes = await Promise.allSettled(pending);
    expect(outcomes).toHaveLength(3);
    await client.destroy();
  });

  it('rejects invalid options', async () => {
    await expect(startDemoPlatform({ chaos: { rate: 2 } })).rejects.toThrow(/chaos.rate/);
    await expect(startDemoPlatform({ rateLimit: { rps: 0 } })).rejects.toThrow(/rps/);
  });
});

describe('demo-server arguments', () => {
  it('parses flags into options', () => {
    expect(parseDemoServerArgs(['--port', '8080', '--posts', '1000', '--seed', '3', '--chaos', '0.05', '--rate-limit', '200'])).toEqual({
      host: '127.0.0.1',
      trackPaths: false,
      port: 8080,
      posts: 1000,
      seed: 3,
      chaos: { rate: 0.05 },
      rateLimit: { rps: 200 },
    });
    expect(parseDemoServerArgs(['--chaos', '1', '--chaos-kinds', 'reset,stall', '--stall-ms', '10']).chaos).toEqual({
      rate: 1,
      kinds: ['reset', 'stall'],
      stallMs: 10,
    });
  });

  it('refuses bad flags', () => {
    for (const argv of [['--port', 'x'], ['--chaos', '1.5'], ['--rate-limit', '0'], ['--bogus'], ['--chaos', '1', '--chaos-kinds', 'fire']]) {
      expect(() => parseDemoServerArgs(argv)).toThrow(DemoServerUsageError);
    }
  });
});

describe('API fixture servers', () => {
  it('Hacker News: items, null for missing, maxitem', async () => {
    const hn = await startHackerNewsFixture({ maxItem: 200 });
    try {
      expect(JSON.parse((await get(`${hn.url}/v0/maxitem.json`)).body.toString())).toBe(200);
      const story = JSON.parse((await get(`${hn.url}/v0/item/1.json`)).body.toString()) as Record<string, unknown>;
      expect(story).toMatchObject({ id: 1, type: 'story', by: expect.any(String), time: expect.any(Number), title: expect.any(String) });
      const commentId = [...Array(200).keys()].map((i) => i + 1).find((i) => hackerNewsItem(i, 200)?.type === 'comment')!;
      const comment = JSON.parse((await get(`${hn.url}/v0/item/${commentId}.json`)).body.toString()) as Record<string, unknown>;
      expect(comment).toMatchObject({ id: commentId, type: 'comment', parent: expect.any(Number), text: expect.any(String) });
      const missingId = [...Array(200).keys()].map((i) => i + 1).find((i) => hackerNewsItem(i, 200) === null)!;
      const missing = await get(`${hn.url}/v0/item/${missingId}.json`);
      expect(missing.status).toBe(200);
      expect(missing.body.toString()).toBe('null');
      expect((await get(`${hn.url}/v0/item/201.json`)).body.toString()).toBe('null');
      expect(hn.hits.get('/v0/maxitem.json')).toBe(1);
    } finally {
      await hn.close();
    }
  });

  it('Discourse: post shape, 404/403 bodies, latest posts, avatars', async () => {
    const d = await startDiscourseFixture({ maxPost: 100 });
    try {
      const statuses = new Map<number, number>();
      let sample: Record<string, unknown> | undefined;
      for (let id = 1; id <= 101; id++) {
        const res = await get(`${d.url}/posts/${id}.json`);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const body = JSON.parse(res.body.toString()) as Record<string, unknown>;
        if (res.status === 404) expect(body).toEqual(DISCOURSE_NOT_FOUND);
        if (res.status === 403) expect(body).toEqual(DISCOURSE_FORBIDDEN);
        if (res.status === 200) sample ??= body;
      }
      expect([...statuses.keys()].sort()).toEqual([200, 403, 404]);
      expect(sample).toMatchObject({
        id: expect.any(Number),
        username: expect.any(String),
        avatar_template: expect.stringMatching(/^\/user_avatar\/127\.0\.0\.1\/\w+\/\{size\}\/1_2\.png$/),
        created_at: expect.any(String),
        cooked: expect.stringMatching(/^<p>/),
        topic_id: expect.any(Number),
        post_number: expect.any(Number),
      });
      expect(sample).toHaveProperty('reply_to_post_number');
      const latest = JSON.parse((await get(`${d.url}/posts.json`)).body.toString()) as { latest_posts: { id: number }[] };
      expect(latest.latest_posts[0]!.id).toBe(100);
      const avatar = await get(`${d.url}${String(sample!['avatar_template']).replace('{size}', '48')}`);
      expect(avatar.status).toBe(200);
      expect(avatar.headers['content-type']).toBe('image/png');
      expect(avatar.body.subarray(0, 4).toString('hex')).toBe('89504e47');
      expect((await get(`${d.url}/t/1/2`)).status).toBe(200);
    } finally {
      await d.close();
    }
  });

  it('Lemmy: GetPostResponse shape, couldnt_find_post, pictrs images', async () => {
    const l = await startLemmyFixture({ maxPost: 100 });
    try {
      let found: { post_view: Record<string, Record<string, unknown>> } | undefined;
      let gaps = 0;
      for (let id = 1; id <= 101; id++) {
        const res = await get(`${l.url}/api/v3/post?id=${id}`);
        if (res.status === 404) {
          expect(JSON.parse(res.body.toString())).toEqual({ error: 'couldnt_find_post' });
          gaps++;
        } else {
          expect(res.status).toBe(200);
          const body = JSON.parse(res.body.toString()) as typeof found;
          if (body!.post_view['post']!['thumbnail_url']) found ??= body;
        }
      }
      expect(gaps).toBeGreaterThan(1);
      const pv = found!.post_view;
      expect(pv['post']).toMatchObject({ id: expect.any(Number), name: expect.any(String), published: expect.any(String), ap_id: expect.stringContaining('/post/') });
      expect(pv['creator']).toMatchObject({ id: expect.any(Number), name: expect.any(String) });
      expect(pv['community']).toMatchObject({ id: expect.any(Number), name: expect.any(String) });
      expect(pv['counts']).toMatchObject({ post_id: pv['post']!['id'], score: expect.any(Number) });
      const thumb = await get(String(pv['post']!['thumbnail_url']));
      expect(thumb.status).toBe(200);
      expect(thumb.body.subarray(0, 2).toString('hex')).toBe('ffd8');
      expect((await get(`${l.url}/api/v3/post`)).status).toBe(400);
    } finally {
      await l.close();
    }
  });

  it('canary on 127.0.0.2 answers anything and records every hit', async () => {
    const canary = await startCanary();
    try {
      expect(canary.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/);
      const res = await get(`${canary.url}/media/img/1-0.jpg?x=1`);
      expect(res.status).toBe(200);
      expect(canary.hits).toEqual([`${canary.url}/media/img/1-0.jpg?x=1`]);
      expect(canary.connections).toBeGreaterThanOrEqual(1);
    } finally {
      await canary.close();
    }
  });
});
