import type Database from 'better-sqlite3';
import { postDocument } from '../curate/post-search.js';
import { postTextReader } from '../curate/post-text.js';

/**
 * The lines of a WACZ's `pages/pages.jsonl` (json-pages-1.0): one entry per archived post, its
 * HTML page when one was captured (else its primary capture), with the post's `title` and its
 * extracted fields as `text` — what ReplayWeb.page's page search looks in, so a post is found by
 * its words or its author. A post whose fields hold no text gets the words of its page (or primary
 * JSON) read from `warcDir`, as `lifeboat search` does. Without shard captures (bare WARCs only)
 * every 200 HTML response is a page.
 */
export interface PageEntry {
  id?: string;
  url: string;
  ts: string;
  title?: string;
  text?: string;
}

export function* pageEntries(db: Database.Database, warcDir?: string): Generator<PageEntry> {
  let n = 0;
  const fallback = warcDir ? postTextReader(db, warcDir) : undefined;
  const rows = db
    .prepare<[], { post_id: number; url: string; fetched_at: string; input_id: number; fields: string | null }>(
      `SELECT post_id, url, fetched_at, input_id, (SELECT fields FROM posts p WHERE p.id = x.post_id ORDER BY p.input_id DESC LIMIT 1) AS fields FROM (
         SELECT c.post_id, c.url, c.fetched_at, c.input_id,
                ROW_NUMBER() OVER (PARTITION BY c.post_id ORDER BY (c.content_type LIKE 'text/html%') DESC, c.rowid) AS rn
         FROM captures c JOIN ids i ON i.id = c.post_id
         WHERE i.status = 'archived' AND c.http_status BETWEEN 200 AND 299) x
       WHERE rn = 1 ORDER BY post_id`,
    )
    .iterate();
  for (const r of rows) {
    n++;
    const doc = postDocument(r.fields, fallback ? () => fallback(r.post_id, r.input_id) : undefined);
    const title = doc.title ?? `Post ${r.post_id}${doc.author ? ` by ${doc.author}` : ''}`;
    const text = [doc.text, doc.author].filter(Boolean).join('\n');
    yield { id: `post-${r.post_id}`, url: r.url, ts: r.fetched_at, title, ...(text ? { text } : {}) };
  }
  if (n > 0) return;
  for (const r of db
    .prepare<[], { url: string; date: string }>(`SELECT url, date FROM records WHERE type = 'response' AND status = 200 AND mime = 'text/html' ORDER BY surt, ts`)
    .iterate()) {
    yield { url: r.url, ts: r.date };
  }
}

/**
 * `hasText` in the header line is what makes ReplayWeb.page take this file as its text index
 * (without it, its page search sees URLs and titles only); set when posts have extracted fields
 * or, with `warcDir`, captures whose words can be read.
 */
export function* pageLines(db: Database.Database, warcDir?: string): Generator<string> {
  const hasText = db.prepare<[], { n: number }>(warcDir ? 'SELECT 1 AS n FROM captures LIMIT 1' : 'SELECT 1 AS n FROM posts LIMIT 1').get() !== undefined;
  yield JSON.stringify({ format: 'json-pages-1.0', id: 'pages', title: 'All Pages', ...(hasText ? { hasText: true } : {}) });
  for (const p of pageEntries(db, warcDir)) yield JSON.stringify(p);
}
