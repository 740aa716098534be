import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../config/logger.js';
import { fillTemplate, parseProfile } from '../config/profile.js';
import { RangeSet } from '../config/id-ranges.js';
import { runCrawl } from '../crawler/run/crawl.js';
import { discoverMaxId } from '../crawler/run/discover.js';
import { finishedIn } from '../node/item.js';
import { shardStatus } from '../storage/curate/status.js';
import { ShardDb } from '../storage/shard/shard-db.js';
import { cli, crawl, readShard } from './fixtures/crawl-run.js';
import { startWordPressShaped, WORDPRESS_SHAPED_PROFILE, type WordPressShaped } from './fixtures/wordpress-shaped.js';

/**
 * Issue 23 §1-2 on a server in WordPress's shapes (test/fixtures/wordpress-shaped.ts): URL
 * alternatives, `if: {json}`, several discovers, `{field:url}`, and incomplete IDs.
 */
let tmp: string;
let wp: WordPressShaped;
let profileFile: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-wp-shaped-'));
  wp = await startWordPressShaped();
  profileFile = join(tmp, 'wp.yaml');
  await writeFile(profileFile, WORDPRESS_SHAPED_PROFILE);
});
afterAll(async () => {
  await wp?.close();
  await rm(tmp, { recursive: true, force: true });
});

const profile = () => parseProfile(WORDPRESS_SHAPED_PROFILE, { source: 'wp.yaml', baseUrl: wp.url });
const logger = createLogger(() => undefined, 'test');

function captureRows(dir: string): { post_id: number; name: string; url: string; http_status: number }[] {
  const db = new Database(join(dir, 'shard.sqlite'), { readonly: true });
  try {
    return db.prepare<[], { post_id: number; name: string; url: string; http_status: number }>('SELECT post_id, name, url, http_status FROM captures ORDER BY rowid').all();
  } finally {
    db.close();
  }
}

describe('a WordPress-shaped API: one ID sequence behind posts, pages and media', () => {
  let dir: string;
  const committed: number[] = [];
  let first: Awaited<ReturnType<typeof runCrawl>>;
  beforeAll(async () => {
    dir = join(tmp, 'crawl');
    wp.failing = true;
    first = await runCrawl({ profile: profile(), ranges: new RangeSet([{ start: 1, end: 13 }]), outDir: dir, node: 't', logger, allowPrivateNetwork: true, backoffBaseMs: 1, onCommitted: (ids) => committed.push(...ids) });
  });

  it('URL alternatives: the first archived answer wins; when none is, the strongest (private -> restricted, deleted -> missing, an error -> failed)', async () => {
    const s = await readShard(dir);
    expect(Object.fromEntries(s.status)).toEqual({
      1: 'archived', 2: 'archived', 3: 'archived', 4: 'archived', 5: 'restricted', 6: 'missing', 7: 'archived',
      8: 'archived', 9: 'archived', 10: 'archived', 11: 'missing', 12: 'failed', 13: 'archived',
    });
    expect(s.fields.get(4)).toMatchObject({ type: 'page' });
    expect(s.fields.get(3)).toMatchObject({ type: 'attachment' });
    const rows = captureRows(dir);
    // A post answers on its first alternative: /pages and /media are not asked.
    expect(rows.filter((r) => r.post_id === 1 && r.name === 'item').map((r) => r.url)).toEqual([`${wp.url}/wp-json/wp/v2/posts/1`]);
    // The private post's three answers are all recorded (what the platform said), 401 first.
    expect(rows.filter((r) => r.post_id === 5).map((r) => r.http_status)).toEqual([401, 404, 404]);
    expect(wp.hits.get('/wp-json/wp/v2/media/4')).toBeUndefined();
  });

  it('if: {json}: featured_media 0 skips the capture (no /media/0); a set one is fetched and its media queued', async () => {
    expect(wp.hits.get('/wp-json/wp/v2/media/0')).toBeUndefined();
    const rows = captureRows(dir);
    expect(rows.filter((r) => r.name === 'featured').map((r) => r.post_id).sort((a, b) => a - b)).toEqual([2, 8]);
    const s = await readShard(dir);
    expect(s.urls.get(`${wp.url}/wp-content/uploads/2026/12/image-3.jpg`)).toBe('done');
    expect(s.urls.get(`${wp.url}/wp-content/uploads/2026/12/inline-1.jpg`)).toBe('done');
  });

  it('{link:url} keeps a whole URL with its query: /?attachment_id=3 is fetched as such', () => {
    const page = captureRows(dir).filter((r) => r.name === 'page');
    expect(page.find((r) => r.post_id === 3)).toMatchObject({ url: `${wp.url}/?attachment_id=3`, http_status: 200 });
    expect(page.find((r) => r.post_id === 4)).toMatchObject({ url: `${wp.url}/?page_id=4`, http_status: 200 });
    // Out of scope (another host): not fetched, not incomplete; the ID's note says so.
    expect(page.some((r) => r.post_id === 7)).toBe(false);
  });

  it('a secondary that fails after its retries or whose URL cannot be built makes the ID incomplete; a skipped one or a 404 does not', async () => {
    expect(first.incomplete).toBe(2);
    const st = await shardStatus(dir);
    expect(st.incomplete?.ids).toEqual([10, 13]);
    expect(st.incomplete?.reasons.map((r) => r.reason).join('\n')).toMatch(/capture "featured": .*HTTP 500/);
    expect(st.incomplete?.reasons.map((r) => r.reason).join('\n')).toMatch(/capture "page": URL not built: .*no value for \{link:url\}/);
    // Not final: the frontier, a node's report and the commit callback all leave them out.
    expect(committed).not.toContain(10);
    expect(committed).not.toContain(13);
    expect(committed).toContain(8); // its featured image answered a definite 404
    expect(finishedIn(dir, new RangeSet([{ start: 1, end: 13 }])).format()).toBe('1-9,11');
    const s = await readShard(dir);
    expect(s.lastError.get(7)).toMatch(/page: http:\/\/elsewhere\.example\/\?p=7 not fetched/);
  });

  it('the next run crawls incomplete (and failed) IDs again and completes what now answers', async () => {
    wp.failing = false;
    const before = wp.hits.get('/wp-json/wp/v2/posts/10') ?? 0;
    const second = await runCrawl({ profile: profile(), ranges: new RangeSet([{ start: 1, end: 13 }]), outDir: dir, node: 't', logger, allowPrivateNetwork: true, backoffBaseMs: 1 });
    expect(wp.hits.get('/wp-json/wp/v2/posts/10')).toBe(before + 1);
    expect(wp.hits.get('/wp-json/wp/v2/posts/1')).toBe(1);
    // Only what was missing is fetched again: the primary (its status may have changed) and the
    // failed capture; the page archived by the first run is not, and its fields are kept.
    expect(wp.hits.get('/?p=10')).toBe(1);
    const s2 = await readShard(dir);
    expect(s2.fields.get(10)).toMatchObject({ type: 'post', link: `${wp.url}/?p=10`, featured_media: 12, heading: 'Item 10 title' });
    expect(s2.urls.get(`${wp.url}/wp-content/uploads/2026/12/image-12.jpg`)).toBe('done');
    expect(second.incomplete).toBe(1);
    const st = await shardStatus(dir);
    expect(st.incomplete?.ids).toEqual([13]);
    expect((await readShard(dir)).status.get(12)).toBe('archived');
    const v = await cli(['verify', dir]);
    expect(v.code, `${v.stdout}${v.stderr}`).toBe(0);
  });
});

describe('the crawl command and status with incomplete IDs', () => {
  it('exits 3 and says how many are incomplete; status lists them with the reason, and in --json', async () => {
    wp.failing = true;
    const dir = join(tmp, 'cli');
    const r = await crawl(['--profile', profileFile, '--base-url', wp.url, '--ids', '8,10,13', '--out', dir]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/incomplete: 2 IDs miss a capture/);
    const st = await cli(['status', dir]);
    expect(st.stdout).toMatch(/^incomplete: 2 IDs miss a capture \(10,13\)/m);
    expect(st.stdout).toMatch(/× capture "featured": http:\/\/127\.0\.0\.1:\d+\/…: HTTP 500/);
    expect(st.stdout).not.toMatch(/left: nothing/);
    const js = JSON.parse((await cli(['status', dir, '--json'])).stdout) as { incomplete: { total: number; ids: number[] } };
    expect(js.incomplete).toMatchObject({ total: 2, ids: [10, 13] });
  });
});

describe('ids.discover as a list', () => {
  it('latest is the highest any entry gives: an empty selection is skipped, several values count their highest', async () => {
    expect(await discoverMaxId(profile(), { allowPrivateNetwork: true })).toBe(10);
  });

  it('fails when every entry selects nothing', async () => {
    const only = parseProfile(WORDPRESS_SHAPED_PROFILE.replace(/discover:\n(\s+- .*\n){3}/, 'discover:\n    - {url: "{base_url}/wp-json/wp/v2/media?per_page=1", json: "$[*].id"}\n'), { source: 'wp.yaml', baseUrl: wp.url });
    expect(only.discover).toHaveLength(1);
    await expect(discoverMaxId(only, { allowPrivateNetwork: true })).rejects.toThrow(/nothing selected/);
  });
});

describe('the format: validation and placeholders', () => {
  const base = (captures: string, ids = '') => `name: t\nbase_url: http://127.0.0.1:1\n${ids}captures:\n${captures}`;
  const err = (text: string) => {
    try {
      parseProfile(text, { source: 't.yaml' });
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };

  it('accepts the new forms and resolves them', () => {
    const p = parseProfile(
      base('  - {name: a, url: ["{base_url}/a/{id}", "{base_url}/b/{id}"], extract: {fields: {u: "$.u"}}}\n  - {name: b, url: "{u:url}", if: {json: "$.u"}}\n  - {name: c, url: "{base_url}/c", if: always}\n', 'ids: {discover: {url: "{base_url}/l", json: "$.n"}}\n'),
      { source: 't.yaml' },
    );
    expect(p.captures[0]!.urlTemplates).toEqual(['{base_url}/a/{id}', '{base_url}/b/{id}']);
    expect(p.captures[1]!.when).toEqual({ json: '$.u' });
    expect(p.captures[2]!.when).toBe('always');
    expect(p.discover).toEqual([{ urlTemplate: '{base_url}/l', jsonPath: '$.n' }]);
  });

  it('refuses what cannot work, naming the key', () => {
    expect(err(base('  - {name: a, url: []}\n'))).toMatch(/captures\[0\]\.url/);
    expect(err(base('  - {name: a, url: 5}\n'))).toMatch(/captures\[0\]\.url: url is a URL template or a list of them/);
    expect(err(base('  - {name: a, url: "{base_url}/{id}"}\n  - {name: b, url: "{base_url}/x", if: archivd}\n'))).toMatch(/captures\[1\]\.if: if is always, archived or \{json: "\$\.path"\}/);
    expect(err(base('  - {name: a, url: ["{base_url}/{id}", "{base_url}/{nope}"]}\n'))).toMatch(/captures\[0\]\.url\[1\]: unknown placeholder \{nope\}/);
    expect(err(base('  - {name: a, url: "{base_url}/{id}", if: {json: "$.x"}}\n'))).toMatch(/captures\[0\]\.if: the primary capture cannot depend on itself/);
    expect(err(base('  - {name: a, url: "{base_url}/{id}"}\n  - {name: b, url: "{base_url}/x", if: {json: "$[?"}}\n'))).toMatch(/captures\[1\]\.if\.json: JSONPath/);
    expect(err(base('  - {name: a, url: "{base_url}/{id}"}\n  - {name: b, url: "{base_url}/x", if: {jsn: "$.x"}}\n'))).toMatch(/captures\[1\]\.if/);
    expect(err(base('  - {name: a, url: "{base_url}/x?u={id:url}"}\n'))).toMatch(/\{id:url\} is a whole URL: it must begin the template/);
    expect(err(base('  - {name: a, url: "{base_url}/{id:query}"}\n'))).toMatch(/\{id:path\} \(a path, slashes kept\) and \{id:url\}/);
    expect(err(base('  - {name: a, url: "{base_url}/{id}"}\n', 'ids: {discover: [{url: "{base_url}/l", json: "$.n"}, {url: "{base_url}/m", json: "$["}]}\n'))).toMatch(/ids\.discover\[1\]\.json/);
  });

  it('{x:url} keeps scheme, host, path and query; resolves a relative URL against base_url; {x:path} still escapes ? (it is a path)', () => {
    const v = { base_url: 'http://h/wp', link: 'http://h/?attachment_id=134', rel: '/?p=5', path: '/a b/?c', bad: 'javascript:alert(1)' };
    expect(fillTemplate('{link:url}', v)).toBe('http://h/?attachment_id=134');
    expect(fillTemplate('{rel:url}', v)).toBe('http://h/?p=5');
    expect(fillTemplate('{base_url}{path:path}', v)).toBe('http://h/wp/a%20b/%3Fc');
    expect(() => fillTemplate('{bad:url}', v)).toThrow(/not an http\(s\) URL/);
  });
});

describe('shard schema 2: the incomplete column', () => {
  it('a shard written before it is migrated on open; a reader of an old shard sees no incomplete IDs', async () => {
    const dir = join(tmp, 'old');
    await rm(dir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    const path = join(dir, 'shard.sqlite');
    new ShardDb(path).close();
    const raw = new Database(path);
    raw.exec('DROP INDEX ids_incomplete; ALTER TABLE ids DROP COLUMN incomplete; UPDATE schema_version SET version = 1');
    raw.prepare("INSERT INTO ids (id, status, http_status, attempts, last_error, updated_at) VALUES (1, 'archived', 200, 1, NULL, 0)").run();
    raw.close();
    expect((await shardStatus(dir)).incomplete).toBeUndefined();
    const db = new ShardDb(path);
    try {
      expect(db.idState(1)).toEqual({ status: 'archived', attempts: 1, incomplete: null });
      db.recordOutcome({ id: 2, status: 'archived', httpStatus: 200, attempts: 1, lastError: 'x', incomplete: 'capture "c": HTTP 500' });
      expect([...db.finalRanges()]).toEqual([{ start: 1, end: 1 }]);
      expect(db.incompleteCount()).toBe(1);
    } finally {
      db.close();
    }
    expect((await readdir(dir)).includes('shard.sqlite')).toBe(true);
  });
});

describe('lifeboat probe', () => {
  interface ProbeLine {
    id: string;
    status: string;
    why: string;
    incomplete: string | null;
    captures: { name: string; url: string | null; http: number | null; bytes: number | null; skipped: string | null; tried?: { url: string; http: number | null; outcome: string }[] }[];
    fields: Record<string, unknown>;
    media: string[];
    notes: string[];
  }
  const probe = async (args: string[]) => {
    // The temporary folder goes where os.tmpdir() says: a folder of the test's own, to see it emptied.
    const own = await mkdtemp(join(tmp, 'probe-tmp-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = own;
    try {
      const r = await cli(['probe', '--profile', profileFile, '--base-url', wp.url, '--allow-private-network', ...args]);
      return { ...r, left: await readdir(own) };
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  };

  it('--json: one object per ID with its status and why, each capture, fields, media and notes; keeps nothing', async () => {
    wp.failing = true;
    const r = await probe(['--ids', '1-13', '--json']);
    expect(r.code, r.stderr).toBe(3); // 12 failed, 10 and 13 incomplete
    expect(r.left).toEqual([]);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as ProbeLine);
    expect(lines.map((l) => l.id)).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13']);
    const by = new Map(lines.map((l) => [l.id, l]));
    const one = by.get('1')!;
    expect(one).toMatchObject({ status: 'archived', why: 'HTTP 200 is in status.archived; alternative 1 of 3 (' + `${wp.url}/wp-json/wp/v2/posts/1) answered`, incomplete: null });
    expect(one.captures.map((c) => [c.name, c.http, c.skipped])).toEqual([
      ['item', 200, null],
      ['page', 200, null],
      ['featured', null, 'if: {json: "$.featured_media"} selects 0'],
    ]);
    expect(one.captures[0]!.bytes).toBeGreaterThan(100);
    expect(one.fields).toMatchObject({ type: 'post', title: 'Item 1 title', featured_media: 0 });
    expect(one.media).toEqual([`${wp.url}/wp-content/uploads/2026/12/inline-1.jpg`]);
    const priv = by.get('5')!;
    expect(priv.status).toBe('restricted');
    expect(priv.why).toMatch(/^HTTP 401 is in status\.restricted; none archived, the strongest answer was alternative 1 of 3/);
    expect(priv.captures[0]!.tried?.map((t) => [t.http, t.outcome])).toEqual([[401, 'restricted'], [404, 'missing'], [404, 'missing']]);
    expect(priv.captures[1]).toMatchObject({ name: 'page', skipped: 'if: archived, and the primary is restricted' });
    expect(by.get('4')!.why).toMatch(/alternative 2 of 3 \(.*\/pages\/4\) answered/);
    expect(by.get('3')!.captures[1]).toMatchObject({ url: `${wp.url}/?attachment_id=3`, http: 200 });
    expect(by.get('7')!.notes.join('\n')).toMatch(/page: http:\/\/elsewhere\.example\/\?p=7 not fetched \(.*scope/);
    expect(by.get('10')!.incomplete).toMatch(/capture "featured": .*HTTP 500/);
    expect(by.get('10')!.notes.join('\n')).toMatch(/^incomplete: capture "featured"/m);
    expect(by.get('12')!.status).toBe('failed');
    expect(by.get('12')!.captures[0]).toMatchObject({ url: `${wp.url}/wp-json/wp/v2/media/12`, http: null, bytes: null });
  });

  it('prints the same for a person, and refuses more than a few IDs', async () => {
    wp.failing = false;
    const r = await probe(['--ids', '2,5']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ID 2: archived — HTTP 200 is in status\.archived/m);
    expect(r.stdout).toMatch(/^ {2}featured: http:\/\/127\.0\.0\.1:\d+\/wp-json\/wp\/v2\/media\/3 → HTTP 200, \d+ bytes$/m);
    expect(r.stdout).toMatch(/^ID 5: restricted — /m);
    expect(r.stdout).toMatch(/^ {6}alternative 2: .*\/pages\/5 → HTTP 404 \(missing\)$/m);
    expect(r.stdout).toMatch(/^ {4}title: "Item 2 title"$/m);
    expect(r.stdout).toMatch(/^probe: 2 of 2 IDs: archived 1, restricted 1; incomplete 0; nothing kept$/m);
    const many = await probe(['--ids', '1-5000']);
    expect(many.code).toBe(2);
    expect(many.stderr).toMatch(/5000 IDs; probe tries at most 1000/);
  });
});
