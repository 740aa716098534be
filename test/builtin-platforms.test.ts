import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProfile } from '../config/profile.js';
import { extract } from '../crawler/extract/extract.js';
import { extractLimits } from '../crawler/extract/extract-bounds.js';
import { cli, crawl, readShard } from './fixtures/crawl-run.js';
import { discourseKind, discourseUploads, discourseUser, startDiscourseVersionFixture } from './fixtures/discourse-server.js';
import { hnItem, hnKind, startHnFixture } from './fixtures/hackernews-server.js';
import { httpCapture } from './fixtures/http-capture.js';
import { lemmyPostKind, lemmyPostMedia, startLemmyVersionFixture, type LemmyVersion } from './fixtures/lemmy-server.js';

/**
 * Each corrected built-in (config/profiles/*.yaml) crawled for real against a server answering
 * in its platform's documented shapes and error bodies (test/fixtures/*-server.ts).
 */
let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-platforms-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function verified(dir: string): Promise<void> {
  const v = await cli(['verify', dir]);
  expect(v.code, `${v.stdout}${v.stderr}`).toBe(0);
}

describe('hackernews built-in', () => {
  it('null is missing, deleted is gone, dead is archived with its flag; 1-latest discovers maxitem', async () => {
    const maxItem = 70;
    const hn = await startHnFixture({ maxItem });
    try {
      const dir = join(tmp, 'hn');
      const r = await crawl(['--profile', 'hackernews', '--base-url', hn.url, '--ids', '1-latest', '--out', dir]);
      expect(r.code, r.stderr).toBe(0);
      const s = await readShard(dir);
      expect(s.status.size).toBe(maxItem);
      const kinds = new Set<string>();
      for (let id = 1; id <= maxItem; id++) {
        const kind = hnKind(id, maxItem);
        kinds.add(kind);
        const want = kind === 'null' ? 'missing' : kind === 'deleted' ? 'gone' : 'archived';
        expect(s.status.get(id), `item ${id} (${kind})`).toBe(want);
        if (kind === 'dead') expect(s.fields.get(id)?.dead, `item ${id}`).toBe(true);
        if (want === 'archived') expect(s.fields.get(id)?.type).toBe((hnItem(id, maxItem) as { type: string }).type);
      }
      expect([...kinds].sort()).toEqual(['comment', 'dead', 'deleted', 'job', 'null', 'poll', 'pollopt', 'story']);
      await verified(dir);
    } finally {
      await hn.close();
    }
  });

  it('follows a poll’s parts and a poll option’s poll as related IDs', async () => {
    const p = loadProfile('hackernews', { baseUrl: 'http://127.0.0.1:1' });
    const rules = p.captures[0]!.extract;
    const of = async (id: number) => (await extract(httpCapture(`http://127.0.0.1:1/v0/item/${id}.json`, JSON.stringify(hnItem(id, 100))), rules, 'json', extractLimits(p))).ids;
    expect(hnKind(40, 100)).toBe('poll');
    expect(await of(40)).toEqual(['41', '42']);
    expect(await of(41)).toEqual(['40']);
  });
});

describe.each<LemmyVersion>(['0.18', '0.19.4'])('lemmy built-in against Lemmy %s', (version) => {
  it('missing, deleted and removed posts are missing; rate limits are waited out; the post image, body images, avatars and banners archived', async () => {
    const maxPost = 40;
    const rateLimited = new Set([3, 11]);
    const l = await startLemmyVersionFixture({ maxPost, version, rateLimited, rateLimitedTimes: 2 });
    try {
      const dir = join(tmp, `lemmy-${version}`);
      const r = await crawl(['--profile', 'lemmy', '--base-url', l.url, '--ids', '1-latest', '--out', dir]);
      expect(r.code, r.stderr).toBe(0);
      expect(l.rateLimitedAnswers()).toBe(4);
      const s = await readShard(dir);
      expect(s.status.size).toBe(maxPost);
      const kinds = new Set<string>();
      for (let id = 1; id <= maxPost; id++) {
        const kind = lemmyPostKind(id, maxPost);
        kinds.add(kind);
        expect(s.status.get(id), `post ${id} (${kind})`).toBe(kind === 'live' ? 'archived' : 'missing');
        if (kind !== 'live') continue;
        const m = lemmyPostMedia(id, l.url);
        const wanted = [m.imageUrl, m.thumbnail, m.avatar, m.banner, m.communityIcon, m.communityBanner, ...m.bodyImages.map((u) => new URL(u, l.url).href)];
        for (const u of wanted) if (u) expect(s.archived.has(u), `post ${id}: ${u}`).toBe(true);
        if (m.externalUrl) expect(s.urls.get(m.externalUrl), `post ${id}: the external link is out of scope`).toBe('skipped');
      }
      expect([...kinds].sort()).toEqual(['deleted', 'live', 'none', 'removed']);
      // Rate-limit answers are never archived as the post.
      for (const id of rateLimited) expect(s.bodies.get(`${l.url}/api/v3/post?id=${id}`)?.toString()).toContain('post_view');
      await verified(dir);
    } finally {
      await l.close();
    }
  });
});

describe('lemmy built-in: a rate limit that does not end', () => {
  it('leaves the ID failed, naming the rule, and archives no rate-limit answer as the post', async () => {
    const l = await startLemmyVersionFixture({ maxPost: 10, version: '0.19.4', rateLimited: new Set([5]), rateLimitedTimes: 1000 });
    try {
      const text = await readFile(fileURLToPath(new URL('../config/profiles/lemmy.yaml', import.meta.url)), 'utf8');
      const file = join(tmp, 'lemmy-2-attempts.yaml');
      await writeFile(file, text.replace('robots: obey}', 'robots: obey, max_attempts: 2}'));
      const dir = join(tmp, 'lemmy-limited');
      const r = await crawl(['--profile', file, '--base-url', l.url, '--ids', '4-6', '--out', dir]);
      expect(r.code, r.stderr).not.toBe(2);
      const s = await readShard(dir);
      expect(s.status.get(5)).toBe('failed');
      expect(s.lastError.get(5)).toMatch(/\$\.error = "rate_limit_error" \(status\.rules\[1\]: retry\): still so after 2 attempts/);
      expect(l.rateLimitedAnswers()).toBe(2);
      expect(s.status.get(4)).toBe(lemmyPostKind(4, 10) === 'live' ? 'archived' : 'missing');
    } finally {
      await l.close();
    }
  });
});

describe('discourse built-in', () => {
  it('uploads from cooked (originals and resized), avatars at 240 px, the crawler-rendered topic page with its requisites, hidden posts flagged', async () => {
    const maxPost = 30;
    const d = await startDiscourseVersionFixture({ maxPost, rateLimited: new Set([2]) });
    try {
      const dir = join(tmp, 'discourse');
      const r = await crawl(['--profile', 'discourse', '--base-url', d.url, '--ids', '1-latest', '--out', dir]);
      expect(r.code, r.stderr).toBe(0);
      const s = await readShard(dir);
      const kinds = new Set<string>();
      for (let id = 1; id <= maxPost; id++) {
        const kind = discourseKind(id, maxPost);
        kinds.add(kind);
        expect(s.status.get(id), `post ${id} (${kind})`).toBe(kind === 'none' ? 'missing' : kind === 'forbidden' ? 'restricted' : 'archived');
        if (kind === 'hidden') expect(s.fields.get(id)).toMatchObject({ hidden: true, cooked_hidden: true });
        if (kind === 'live') {
          expect(s.fields.get(id)?.hidden).toBe(false);
          const up = discourseUploads(id);
          for (const u of [...up.lightbox.flatMap((x) => [x.original, x.optimized]), ...up.small]) expect(s.archived.has(`${d.url}${u}`), `post ${id}: ${u}`).toBe(true);
        }
        if (kind === 'live' || kind === 'hidden') expect(s.archived.has(`${d.url}${discourseUser(id).avatar(240, '127.0.0.1')}`), `avatar of ${id}`).toBe(true);
      }
      expect([...kinds].sort()).toEqual(['forbidden', 'hidden', 'live', 'none']);
      expect([...d.hits.keys()].filter((k) => k.includes('%7Bsize%7D') || k.includes('{size}'))).toEqual([]);
      // The topic pages were asked for (and archived) in Discourse's server-rendered crawler view.
      expect(d.topicRequests.length).toBeGreaterThan(0);
      expect(d.topicRequests.every((t) => t.crawlerHeader)).toBe(true);
      const page = [...s.bodies.entries()].find(([url]) => url.includes('/t/topic-number-'));
      expect(page?.[1].toString()).toContain('crawler-post');
      for (const u of ['/stylesheets/desktop_3f0e1a.css?__ws=forum', '/fonts/OpenSans-Regular.woff2?v=0.0.17', '/images/discourse-bg.png', '/uploads/default/original/1X/logo.png']) {
        expect(s.archived.has(`${d.url}${u}`), `requisite ${u}`).toBe(true);
      }
      await verified(dir);
    } finally {
      await d.close();
    }
  });
});
