import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { InputError, StorageError } from '../../config/errors.js';
import { mergedDbPath, warcsDir } from '../shard/layout.js';
import { TEXT_FIELDS, fieldsHaveText, postTextReader } from './post-text.js';

/**
 * Finding posts after a rescue (issue 15 §7): a full-text index (SQLite FTS5) of the merged posts'
 * extracted fields, kept in merged.sqlite (`post_search`) and brought up to date at the end of
 * every merge (only the inputs not yet indexed are read), or on the first search of a directory
 * merged by an older lifeboat. One row per distinct text of a post: overlapping shards holding
 * the same post add nothing; an edited post is found by the words of either version. Only posts
 * whose merged status is `archived` are indexed.
 * `postDocument` is also what export puts in each page of pages.jsonl, so ReplayWeb.page's
 * search finds the same posts. When a post's fields hold no text (its profile names no text
 * field, or extracts no fields at all), its words come from its archived page or primary JSON
 * (post-text.ts), so a rescue is searchable without configuring anything.
 */
export interface PostDocument {
  title: string | null;
  author: string | null;
  /** Every other textual field (text-like keys first), newline-separated; not the title or the author; then the fallback text, if any. */
  text: string;
  /** ISO date of the post when a field gives one. */
  date: string | null;
}

export interface SearchHit {
  id: number;
  date: string | null;
  author: string | null;
  title: string | null;
  snippet: string;
  url: string | null;
}

export interface SearchOptions {
  author?: string;
  /** YYYY-MM-DD or an ISO date-time; inclusive. */
  since?: string;
  /** YYYY-MM-DD (the whole day) or an ISO date-time; inclusive. */
  until?: string;
  limit?: number;
}

const TEXT_KEYS = ['title', 'subject', ...TEXT_FIELDS];
const AUTHOR_KEYS = ['author', 'author_handle', 'username', 'user', 'handle'];
const DATE_KEYS = ['created_at', 'published_at', 'date', 'posted_at', 'timestamp'];

/** A date-time without a zone (WordPress's `date_gmt`, many APIs' UTC stamps) is UTC, whatever the machine's zone. */
function isoDate(v: unknown): string | null {
  if (typeof v !== 'string' && typeof v !== 'number') return null;
  const s = typeof v === 'string' && /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(v.trim()) ? `${v.trim().replace(' ', 'T')}Z` : v;
  const ms = typeof s === 'number' ? (s < 1e12 ? s * 1000 : s) : Date.parse(s);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

/**
 * The searchable document of one post, from its extracted fields (a JSON object), and — only when
 * those hold no text field — `fallbackText` (the words of its archived page or JSON, post-text.ts).
 */
export function postDocument(fieldsJson: string | null, fallbackText?: () => string): PostDocument {
  let f: Record<string, unknown> = {};
  try {
    const parsed = fieldsJson ? (JSON.parse(fieldsJson) as unknown) : {};
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) f = parsed as Record<string, unknown>;
  } catch {
    // fields are informational
  }
  const first = (keys: string[]): string | null => keys.map((k) => f[k]).find((v): v is string => typeof v === 'string' && v.trim() !== '') ?? null;
  const dateKey = DATE_KEYS.find((k) => isoDate(f[k]) !== null);
  const keys = [...TEXT_KEYS.filter((k) => k in f), ...Object.keys(f).filter((k) => !TEXT_KEYS.includes(k) && k !== dateKey)];
  const title = first(['title', 'subject']);
  const author = first(AUTHOR_KEYS);
  const parts = keys
    .flatMap((k) => strings(f[k]))
    .map((s) => s.trim())
    .filter((s) => s !== '' && s !== title && s !== author && !/^[a-z]+:\/\//i.test(s) && !/^\d+$/.test(s));
  if (fallbackText && !fieldsHaveText(f)) {
    const more = fallbackText().trim();
    if (more) parts.push(more);
  }
  return { title, author, text: [...new Set(parts)].join('\n'), date: dateKey ? isoDate(f[dateKey]) : null };
}

const SCHEMA = `
CREATE VIRTUAL TABLE IF NOT EXISTS post_search USING fts5(title, author, text, post_id UNINDEXED, date UNINDEXED, url UNINDEXED,
  tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS post_search_docs (post_id INTEGER NOT NULL, text_sha1 TEXT NOT NULL, PRIMARY KEY (post_id, text_sha1));
CREATE TABLE IF NOT EXISTS post_search_inputs (input_id INTEGER PRIMARY KEY);
`;

/**
 * Indexes the posts of every input not indexed yet. Returns the number of documents added.
 * `warcDir` (where the records' WARCs are) lets a post without text fields be indexed by the words
 * of its page; without it such a post is indexed by its fields only.
 */
export function syncPostSearch(db: Database.Database, warcDir?: string): number {
  db.exec(SCHEMA);
  const inputs = db.prepare<[], { input_id: number }>('SELECT id AS input_id FROM inputs WHERE id NOT IN (SELECT input_id FROM post_search_inputs) ORDER BY id').all();
  if (inputs.length === 0) return 0;
  const fallback = warcDir ? postTextReader(db, warcDir) : undefined;
  const columns = `(SELECT c.url FROM captures c WHERE c.post_id = i.id AND c.http_status BETWEEN 200 AND 299
                    ORDER BY (c.content_type LIKE 'text/html%') DESC, c.rowid LIMIT 1) AS url,
                   (SELECT MIN(c.fetched_at) FROM captures c WHERE c.post_id = i.id AND c.input_id = @input) AS fetched_at`;
  const withFields = db.prepare<[{ input: number; after: number }], { id: number; fields: string | null; url: string | null; fetched_at: string | null }>(
    `SELECT i.id, p.fields, ${columns}
     FROM posts p JOIN ids i ON i.id = p.id AND i.status = 'archived'
     WHERE p.input_id = @input AND p.id > @after ORDER BY p.id LIMIT 1000`,
  );
  // Archived posts this input gave that no input extracted fields for (a profile without extract.fields).
  const withoutFields = db.prepare<[{ input: number; after: number }], { id: number; fields: string | null; url: string | null; fetched_at: string | null }>(
    `SELECT i.id, NULL AS fields, ${columns}
     FROM ids i
     WHERE i.input_id = @input AND i.status = 'archived' AND i.id > @after AND NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = i.id)
     ORDER BY i.id LIMIT 1000`,
  );
  const seen = db.prepare('INSERT OR IGNORE INTO post_search_docs (post_id, text_sha1) VALUES (?, ?)');
  const put = db.prepare('INSERT INTO post_search (title, author, text, post_id, date, url) VALUES (?, ?, ?, ?, ?, ?)');
  const done = db.prepare('INSERT OR IGNORE INTO post_search_inputs (input_id) VALUES (?)');
  let added = 0;
  db.transaction(() => {
    for (const { input_id } of inputs) {
      for (const posts of [withFields, withoutFields]) {
        // Pages, not an iterator: SQLite refuses writes on a connection while a statement iterates.
        let page = posts.all({ input: input_id, after: -1 });
        while (page.length > 0) {
          for (const p of page) {
            const doc = postDocument(p.fields, fallback ? () => fallback(p.id, input_id) : undefined);
            if (!doc.title && !doc.author && !doc.text) continue;
            const key = createHash('sha1').update(`${doc.title ?? ''}\n${doc.author ?? ''}\n${doc.text}`).digest('hex');
            if (seen.run(p.id, key).changes === 0) continue;
            put.run(doc.title, doc.author, doc.text, p.id, doc.date ?? isoDate(p.fetched_at), p.url);
            added++;
          }
          page = posts.all({ input: input_id, after: page[page.length - 1]!.id });
        }
      }
      done.run(input_id);
    }
  })();
  return added;
}

function bound(d: string, which: 'since' | 'until'): string {
  const dayOnly = /^\d{4}-\d{2}-\d{2}$/.test(d);
  const ms = Date.parse(dayOnly ? `${d}T00:00:00Z` : d);
  if (!Number.isFinite(ms)) throw new InputError(`--${which} ${d}: not a date (use YYYY-MM-DD or an ISO date-time)`, { code: 'E_SEARCH_DATE' });
  return new Date(which === 'until' && dayOnly ? ms + 86_400_000 - 1 : ms).toISOString();
}

/** Plain words as FTS5 terms, for queries FTS5's own syntax does not parse (`foo-bar`, a stray quote). */
function quoteTerms(query: string): string {
  return query
    .split(/\s+/)
    .map((w) => w.replace(/"/g, ''))
    .filter(Boolean)
    .map((w) => `"${w}"`)
    .join(' ');
}

/** Searches a merged directory's posts: words (FTS5 syntax: phrases in quotes, prefix*, OR, NOT), author, date range. */
export function searchPosts(dir: string, query: string, o: SearchOptions = {}): SearchHit[] {
  const path = mergedDbPath(dir);
  if (!existsSync(path)) throw new InputError(`${dir} is not a merged directory (no merged.sqlite): run lifeboat merge first`, { code: 'E_SEARCH_INPUT' });
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: true });
  } catch (err) {
    throw new StorageError(`cannot open ${path}: ${(err as Error).message}`, { code: 'E_SEARCH_DB', cause: err });
  }
  try {
    db.pragma('journal_mode = WAL');
    syncPostSearch(db, warcsDir(dir));
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (o.author) {
      where.push('lower(author) = lower(?)');
      args.push(o.author.replace(/^@/, ''));
    }
    if (o.since) {
      where.push('date >= ?');
      args.push(bound(o.since, 'since'));
    }
    if (o.until) {
      where.push('date <= ?');
      args.push(bound(o.until, 'until'));
    }
    const limit = o.limit ?? 20;
    const run = (match: string | null): SearchHit[] => {
      const conds = match ? ['post_search MATCH ?', ...where] : where;
      const sql = `SELECT post_id AS id, date, author, title, url,
                   ${match ? `snippet(post_search, 2, '[', ']', '…', 12)` : 'substr(text, 1, 80)'} AS snippet
                   FROM post_search ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''}
                   ORDER BY ${match ? 'rank, ' : ''}date, post_id LIMIT ?`;
      return db.prepare<(string | number)[], SearchHit>(sql).all(...(match ? [match] : []), ...args, limit);
    };
    const q = query.trim();
    if (!q) return run(null);
    try {
      return run(q);
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_ERROR') throw err;
      const quoted = quoteTerms(q);
      try {
        return quoted ? run(quoted) : run(null);
      } catch (again) {
        throw new InputError(`search ${JSON.stringify(query)}: ${(again as Error).message}`, { code: 'E_SEARCH_QUERY', cause: again });
      }
    }
  } finally {
    db.close();
  }
}
