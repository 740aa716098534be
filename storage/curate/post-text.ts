import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { Parser } from 'htmlparser2';
import { readDecodedPayload } from '../warc/decoded-payload.js';

/**
 * A post's words when its profile names no text field (issue 23 §4): the visible text of the
 * post's archived HTML page — inside its `<main>` (or `role="main"`) when it has one, so the site's
 * menus and footer do not make every post match — or, without a page, the string values of its
 * primary JSON (HTML inside a string reduced to its text). Read from the WARC record the capture
 * points at; bounded: at most MAX_TEXT_CHARS characters from the first MAX_SOURCE_BYTES of the
 * payload, HTML parsed no deeper than MAX_DEPTH levels. `lifeboat search` (post-search.ts) and the
 * WACZ's pages.jsonl use it; a profile's own text fields (TEXT_FIELDS) always win.
 */
export const MAX_TEXT_CHARS = 32 * 1024;
const MAX_SOURCE_BYTES = 4 * 1024 * 1024;
const MAX_RECORD_BYTES = 64 * 1024 * 1024;
const MAX_DEPTH = 512;

/** Fields that hold a post's text: when a profile extracts one of them, no fallback is read. */
export const TEXT_FIELDS = ['text', 'body', 'content', 'description', 'summary', 'rendered_text'];

const HIDDEN = new Set(['head', 'script', 'style', 'noscript', 'template', 'svg', 'math', 'iframe', 'object', 'select', 'button']);
const BLOCK = new Set(['p', 'div', 'br', 'li', 'ul', 'ol', 'tr', 'td', 'th', 'table', 'section', 'article', 'main', 'header', 'footer', 'nav', 'aside',
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'pre', 'figure', 'figcaption', 'dd', 'dt', 'dl', 'hr', 'form', 'title', 'address', 'details', 'summary']);

function tidy(s: string): string {
  return s
    .split('\n')
    .map((l) => l.replace(/[ \t\r\f\v\u00a0]+/g, ' ').trim())
    .filter(Boolean)
    .join('\n');
}

function cut(s: string, max: number): string {
  return s.length > max ? s.slice(0, max) : s;
}

/** The visible text of an HTML document or fragment: its `<main>` when it has one, else everything outside head/script/style. */
export function visibleText(html: string, maxChars = MAX_TEXT_CHARS): string {
  let all = '';
  let main = '';
  let hidden = 0;
  let depth = 0;
  let mainDepth = -1; // depth of the open <main>, -1 outside
  let sawMain = false;
  let stopped = false;
  const full = () => (sawMain ? main.length : all.length) >= maxChars * 2;
  const stack: boolean[] = []; // per open element: did it open a hidden region
  const parser = new Parser(
    {
      onopentag(name, attribs) {
        if (stopped) return;
        if (++depth > MAX_DEPTH) {
          stopped = true;
          parser.pause();
          return;
        }
        const hides = HIDDEN.has(name) || 'hidden' in attribs || attribs['aria-hidden'] === 'true';
        stack.push(hides);
        if (hides) hidden++;
        if (mainDepth < 0 && (name === 'main' || attribs.role === 'main')) {
          mainDepth = depth;
          sawMain = true;
        }
        if (BLOCK.has(name)) {
          all += '\n';
          if (mainDepth >= 0) main += '\n';
        }
      },
      ontext(text) {
        if (stopped || hidden > 0) return;
        all += text;
        if (mainDepth >= 0) main += text;
        if (full()) {
          stopped = true;
          parser.pause();
        }
      },
      onclosetag(name) {
        if (stopped) return;
        if (stack.pop()) hidden--;
        if (BLOCK.has(name)) {
          all += '\n';
          if (mainDepth >= 0) main += '\n';
        }
        if (depth === mainDepth) mainDepth = -1;
        depth--;
      },
    },
    { decodeEntities: true },
  );
  parser.write(html.length > MAX_SOURCE_BYTES ? html.slice(0, MAX_SOURCE_BYTES) : html);
  if (!stopped) parser.end();
  const text = tidy(sawMain && main.trim() ? main : all);
  return cut(text, maxChars);
}

/** The string values of a JSON document (HTML in a string reduced to its text; URLs, numbers and dates left out). */
export function jsonText(json: string, maxChars = MAX_TEXT_CHARS): string {
  let doc: unknown;
  try {
    doc = JSON.parse(json.length > MAX_SOURCE_BYTES ? '' : json);
  } catch {
    return '';
  }
  const out: string[] = [];
  let size = 0;
  const seen = new Set<string>();
  const stack: unknown[] = [doc];
  while (stack.length > 0 && size < maxChars) {
    const v = stack.pop();
    if (typeof v === 'string') {
      const s = /<[a-z!/][^>]*>/i.test(v) ? visibleText(v, maxChars - size) : tidy(v);
      if (!s || seen.has(s) || /^[a-z][a-z0-9+.-]*:\/\/\S*$/i.test(s) || /^[\d\s.:+TZ-]+$/.test(s) || /^(true|false|null)$/i.test(s)) continue;
      seen.add(s);
      out.push(s);
      size += s.length + 1;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i]);
    } else if (v && typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>);
      for (let i = entries.length - 1; i >= 0; i--) if (!entries[i]![0].startsWith('_')) stack.push(entries[i]![1]); // _links, _embedded: API plumbing
    }
  }
  return cut(out.join('\n'), maxChars);
}

function charsetOf(contentType: string): string {
  const m = /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType);
  return m?.[1]?.toLowerCase() ?? 'utf-8';
}

function decode(body: Buffer, contentType: string): string {
  const bytes = body.length > MAX_SOURCE_BYTES ? body.subarray(0, MAX_SOURCE_BYTES) : body;
  try {
    return new TextDecoder(charsetOf(contentType)).decode(bytes);
  } catch {
    return new TextDecoder('utf-8').decode(bytes);
  }
}

/** Whether a post's extracted fields already hold its text (a non-empty text-like field). */
export function fieldsHaveText(fields: Record<string, unknown>): boolean {
  return TEXT_FIELDS.some((k) => {
    const v = fields[k];
    return (typeof v === 'string' && v.trim() !== '') || (Array.isArray(v) && v.some((x) => typeof x === 'string' && x.trim() !== ''));
  });
}

interface CaptureRecord {
  content_type: string | null;
  type: string;
  url: string | null;
  payload_digest: string | null;
  warc: string;
  offset: number;
  length: number;
}

/**
 * Reads posts' fallback text from a merged (or indexed shard) database whose records' WARCs are
 * in `warcDir`. One reader per pass: its statements are prepared once.
 */
export function postTextReader(db: Database.Database, warcDir: string): (postId: number, inputId?: number) => string {
  const captures = db.prepare<[number, number | null, number | null], CaptureRecord>(
    `SELECT c.content_type, r.type, r.url, r.payload_digest, r.warc, r.offset, r.length
     FROM captures c JOIN records r ON r.record_id = c.record_id
     WHERE c.post_id = ? AND c.http_status BETWEEN 200 AND 299 AND (? IS NULL OR c.input_id = ?)
     ORDER BY (c.content_type LIKE 'text/html%') DESC, c.rowid LIMIT 1`,
  );
  const original = db.prepare<[string, string], CaptureRecord>(
    `SELECT mime AS content_type, type, url, payload_digest, warc, offset, length FROM records WHERE url = ? AND payload_digest = ? AND type = 'response' LIMIT 1`,
  );
  return (postId, inputId) => {
    let rec = captures.get(postId, inputId ?? null, inputId ?? null) ?? (inputId !== undefined ? captures.get(postId, null, null) : undefined);
    if (rec && rec.type === 'revisit' && rec.url && rec.payload_digest) rec = original.get(rec.url, rec.payload_digest);
    if (!rec) return '';
    const payload = readDecodedPayload(join(warcDir, rec.warc), rec.offset, rec.length, MAX_RECORD_BYTES);
    if (!payload) return '';
    const type = (payload.contentType || rec.content_type || '').toLowerCase();
    const text = decode(payload.body, payload.contentType);
    if (type.includes('html')) return visibleText(text);
    if (type.includes('json') || /^\s*[[{]/.test(text)) return jsonText(text);
    return '';
  };
}
