import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { discoursePost, hackerNewsItem, lemmyPost, startDiscourseFixture, startHackerNewsFixture, startLemmyFixture } from './fixtures/api-servers.js';
import { readWarcDir } from './fixtures/warc-records.js';

async function crawl(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['crawl', ...args, '--allow-private-network', '--quiet', '--rate', '500'], { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

function statuses(dir: string): Map<number, string> {
  const db = new Database(join(dir, 'shard.sqlite'), { readonly: true });
  try {
    return new Map(db.prepare<[], { id: number; status: string }>('SELECT id, status FROM ids').all().map((r) => [r.id, r.status]));
  } finally {
    db.close();
  }
}

describe('built-in profiles against servers in the real APIs’ documented shapes', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-profiles-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('hackernews: a null body is missing; 1-latest discovers maxitem', async () => {
    const hn = await startHackerNewsFixture({ maxItem: 60 });
    try {
      const dir = join(tmp, 'hn');
      const r = await crawl(['--profile', 'hackernews', '--base-url', hn.url, '--ids', '1-latest', '--out', dir]);
      expect(r.code, r.stderr).toBe(0);
      const s = statuses(dir);
      expect(s.size).toBe(60);
      for (let id = 1; id <= 60; id++) expect(s.get(id), `item ${id}`).toBe(hackerNewsItem(id, 60) === null ? 'missing' : 'archived');
      const records = await readWarcDir(join(dir, 'warcs'));
      expect(records.filter((x) => x.type === 'response').length).toBeGreaterThanOrEqual(60);
    } finally {
      await hn.close();
    }
  });

  it('discourse: 404 missing, 403 restricted, topic page fetched from extracted fields', async () => {
    const d = await startDiscourseFixture({ maxPost: 40 });
    try {
      const dir = join(tmp, 'discourse');
      const r = await crawl(['--profile', 'discourse', '--base-url', d.url, '--ids', '1-40', '--out', dir]);
      expect(r.code, r.stderr).toBe(0);
      const s = statuses(dir);
      for (let id = 1; id <= 40; id++) {
        const p = discoursePost(id, 40);
        expect(s.get(id)).toBe(p.status === 200 ? 'archived' : p.status === 404 ? 'missing' : 'restricted');
        if (p.status === 200) {
          const j = p.json as { topic_id: number; post_number: number };
          expect(d.hits.get(`/t/${j.topic_id}/${j.post_number}`), `topic page of ${id}`).toBeGreaterThan(0);
        }
      }
    } finally {
      await d.close();
    }
  });

  it('lemmy: posts, thumbnails and avatars; couldnt_find_post is missing', async () => {
    const l = await startLemmyFixture({ maxPost: 40 });
    try {
      const dir = join(tmp, 'lemmy');
      const r = await crawl(['--profile', 'lemmy', '--base-url', l.url, '--ids', '1-40', '--out', dir]);
      expect(r.code, r.stderr).toBe(0);
      const s = statuses(dir);
      const records = await readWarcDir(join(dir, 'warcs'));
      const fetched = new Set(records.filter((x) => x.type === 'response' || x.type === 'revisit').map((x) => x.url));
      for (let id = 1; id <= 40; id++) {
        const p = lemmyPost(id, 40, l.url) as { post_view: { post: { thumbnail_url?: string }; creator: { avatar?: string } } } | undefined;
        expect(s.get(id)).toBe(p ? 'archived' : 'missing');
        if (p?.post_view.post.thumbnail_url) expect(fetched.has(p.post_view.post.thumbnail_url)).toBe(true);
        if (p?.post_view.creator.avatar) expect(fetched.has(p.post_view.creator.avatar)).toBe(true);
      }
    } finally {
      await l.close();
    }
  });
});
