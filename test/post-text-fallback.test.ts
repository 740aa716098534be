import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { postDocument } from '../storage/curate/post-search.js';
import { MAX_TEXT_CHARS, jsonText, visibleText } from '../storage/curate/post-text.js';
import { cli, crawl } from './fixtures/crawl-run.js';

/**
 * Post text is searchable without configuration (issue 23 §4): when a profile names no text field,
 * `lifeboat search` and the WACZ's pages.jsonl use the visible text of the post's archived HTML page
 * (or its primary JSON's string values), bounded; a profile's own text field still wins. Crawled
 * from the demo platform with three profiles, merged, searched and exported through the CLI.
 */
const demoProfile = (o: { fields: string | null; page: boolean }) => `name: demo-text
ids: {codec: integer}
captures:
  - {name: post, url: "{base_url}/api/v1/posts/{id}", type: json}
${o.page ? '  - {name: page, url: "{base_url}/p/{id}", type: html, if: archived}\n' : ''}${o.fields ? `extract:\n  fields: ${o.fields}\n` : ''}status: {archived: [200], missing: [404], gone: [410], restricted: [401, 403, 451]}
politeness: {concurrency: 8, per_host_concurrency: 8, rate: 500, robots: obey}
media: {fetch: false}
`;

interface Hit {
  id: number;
}

describe('post text without a text field (issue 23 §4)', () => {
  let platform: DemoPlatform;
  let tmp: string;
  const merged: Record<string, string> = {};
  const publicIds: number[] = [];

  beforeAll(async () => {
    platform = await startDemoPlatform({ posts: 30 });
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-post-text-'));
    for (let id = 1; id <= 30; id++) if (platform.post(id).status === 'public') publicIds.push(id);
    const profiles = {
      // Fields, but none of them text: the page's words.
      page: demoProfile({ fields: '{author: "$.author.handle", created_at: "$.created_at"}', page: true }),
      // No fields and no page: the JSON's string values.
      json: demoProfile({ fields: null, page: false }),
      // The profile names its text: only that (and the other fields) is indexed.
      named: demoProfile({ fields: '{author: "$.author.handle", text: "$.text"}', page: true }),
    };
    for (const [name, yaml] of Object.entries(profiles)) {
      const file = join(tmp, `${name}.yaml`);
      await writeFile(file, yaml);
      const r = await crawl(['--profile', file, '--base-url', platform.url, '--ids', '1-30', '--out', join(tmp, `shard-${name}`)]);
      expect(r.code, r.stderr).toBe(0);
      merged[name] = join(tmp, `merged-${name}`);
      const m = await cli(['merge', join(tmp, `shard-${name}`), '--out', merged[name]!]);
      expect(m.code, m.stderr).toBe(0);
    }
  }, 120_000);

  afterAll(async () => {
    await platform?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const search = async (dir: string, query: string): Promise<number[]> => {
    const r = await cli(['search', dir, query, '--json', '--limit', '100']);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as Hit).id);
  };
  const textOf = (id: number): string => (platform.post(id).json as { text: string }).text;
  const displayName = (id: number): string => (platform.post(id).json as { author: { display_name: string } }).author.display_name;

  it('search finds every public post by the words of its page when the fields hold no text', async () => {
    for (const id of publicIds) expect(await search(merged.page!, `"${textOf(id)}"`), `post ${id}`).toContain(id);
    // Words only the page shows: "in reply to #N" (the JSON holds the number only).
    const replies = publicIds.filter((id) => (platform.post(id).json as { reply_to: number | null }).reply_to !== null);
    expect(replies.length).toBeGreaterThan(0);
    expect((await search(merged.page!, 'reply')).sort((a, b) => a - b)).toEqual(replies);
  });

  it('search finds a post by its JSON string values when there is neither a page nor any field', async () => {
    for (const id of publicIds) expect(await search(merged.json!, `"${textOf(id)}"`), `post ${id}`).toContain(id);
    expect(await search(merged.json!, `"${displayName(publicIds[0]!)}"`)).toContain(publicIds[0]!);
  });

  it("a profile's own text field wins: the page's other words are not indexed", async () => {
    const id = publicIds[0]!;
    expect(await search(merged.named!, `"${textOf(id)}"`)).toContain(id);
    expect(await search(merged.named!, 'reply')).toEqual([]);
  });

  it("pages.jsonl carries the page's visible text (no script, no head) in each post's entry", async () => {
    const wacz = join(tmp, 'page.wacz');
    const x = await cli(['export', merged.page!, '--wacz', wacz]);
    expect(x.code, x.stderr).toBe(0);
    const lines = execFileSync('unzip', ['-p', wacz, 'pages/pages.jsonl']).toString().trim().split('\n').map((l) => JSON.parse(l) as { id?: string; text?: string; hasText?: boolean });
    expect(lines[0]!.hasText).toBe(true);
    for (const id of publicIds) {
      const text = lines.find((l) => l.id === `post-${id}`)?.text ?? '';
      expect(text, `post ${id}`).toContain(textOf(id));
      expect(text).toContain(displayName(id));
      expect(text).not.toContain('app.js');
    }
    // The same from a shard exported directly (indexed in place).
    const fromShard = join(tmp, 'json-shard.wacz');
    const y = await cli(['export', join(tmp, 'shard-json'), '--wacz', fromShard]);
    expect(y.code, y.stderr).toBe(0);
    const entries = execFileSync('unzip', ['-p', fromShard, 'pages/pages.jsonl']).toString().trim().split('\n').slice(1).map((l) => JSON.parse(l) as { id: string; text?: string });
    expect(entries.find((e) => e.id === `post-${publicIds[0]}`)?.text).toContain(textOf(publicIds[0]!));
  });
});

describe('visibleText and jsonText', () => {
  it('takes the text a reader sees: not head, scripts, styles or hidden elements; the <main> when there is one', () => {
    const html = `<!doctype html><html><head><title>T</title><style>.a{color:red}</style></head><body>
      <nav>Home About</nav><main><h1>Harbour &amp; flood</h1><p>The water <b>rose</b>.</p><script>var secret = 1;</script>
      <div hidden>invisible</div><span aria-hidden="true">icon</span></main><footer>Powered by</footer></body></html>`;
    expect(visibleText(html)).toBe('Harbour & flood\nThe water rose.');
    expect(visibleText('<body><p>No main here</p><script>x()</script><p>second</p></body>')).toBe('No main here\nsecond');
  });

  it('is bounded: at most MAX_TEXT_CHARS characters, however long or deep the page', () => {
    const long = `<p>${'word '.repeat(MAX_TEXT_CHARS)}</p>`;
    const t = visibleText(long);
    expect(t.length).toBe(MAX_TEXT_CHARS);
    const deep = `${'<div>'.repeat(2000)}deep text${'</div>'.repeat(2000)}<p>after</p>`;
    expect(visibleText(deep)).toBe('');
    expect(jsonText(JSON.stringify({ a: 'x'.repeat(MAX_TEXT_CHARS * 2) })).length).toBe(MAX_TEXT_CHARS);
  });

  it('takes JSON string values: HTML reduced to text, URLs, numbers, dates and _links left out', () => {
    const j = JSON.stringify({ id: 4, link: 'http://h/?p=4', date: '2026-12-07T04:34:27', title: { rendered: 'Harbour' }, content: { rendered: '<p>The <em>pier</em></p>' }, _links: { self: [{ href: 'x' }], note: 'plumbing' } });
    expect(jsonText(j)).toBe('Harbour\nThe pier');
  });

  it("reads a date-time without a zone as UTC, whatever the machine's zone (WordPress date_gmt)", () => {
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      expect(postDocument(JSON.stringify({ date: '2026-12-07T04:34:27' })).date).toBe('2026-12-07T04:34:27.000Z');
      expect(postDocument(JSON.stringify({ date: '2026-12-07T04:34:27+02:00' })).date).toBe('2026-12-07T02:34:27.000Z');
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });
});
