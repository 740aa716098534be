import { createWriteStream } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { once } from 'node:events';
import { getSurt } from 'warcio/utils';
import type Database from 'better-sqlite3';

/**
 * The CDXJ index (pywb's format, what ReplayWeb.page and wayback tools read):
 * `SURT TIMESTAMP {"url","mime","status","digest","length","offset","filename"}`, one line per
 * response, revisit and resource record, sorted by SURT then timestamp. The fields are spelt as
 * warcio.js's indexer spells them (numbers as strings, digest without its `sha1:` prefix).
 * Sorting is SQLite's: the merged DB has an index on (surt, ts), so the lines stream out in
 * order whatever their number.
 */
export function surtOf(url: string): string {
  try {
    if (!/^https?:/i.test(url)) {
      // Foreign records (wget's `metadata://gnu.org/software/wget/warc/wget.log`, ftp://…): keyed
      // as pywb and jwarc key them — the SURT of host and path, without the scheme. Anything
      // without an authority (urn:, dns:) keeps its URI, lower-cased.
      const m = /^[a-z][a-z0-9+.-]*:\/\/(.*)$/is.exec(url);
      return m ? getSurt(`http://${m[1]}`) : url.toLowerCase();
    }
    return getSurt(url);
  } catch {
    return url;
  }
}

/** Whether a target URI is HTTP(S): only those carry a payload digest in the index when the record declares none. */
export function isHttpUri(url: string | undefined): boolean {
  return !!url && /^https?:/i.test(url);
}

/** `2024-05-01T12:00:00.123Z` → `20240501120000`. */
export function cdxTimestamp(date: string | undefined): string {
  return (date ?? '').replace(/[-:T]/g, '').slice(0, 14);
}

/** The CDXJ mime field: `warc/revisit` for revisits, else the HTTP (or resource) content type without parameters. */
export function cdxMime(type: string, httpContentType: string | undefined, warcContentType: string | undefined): string | null {
  if (type === 'revisit') return 'warc/revisit';
  const ct = type === 'response' ? httpContentType : warcContentType;
  return ct ? ct.split(';', 1)[0]!.trim() : null;
}

/** The CDXJ digest field: the payload digest's value without its algorithm prefix (as pywb and warcio.js write it). */
export function cdxDigest(label: string | undefined): string | null {
  if (!label) return null;
  const i = label.indexOf(':');
  return i < 0 ? label : label.slice(i + 1);
}

export interface CdxjRow {
  surt: string;
  ts: string;
  url: string;
  mime: string | null;
  status: number | null;
  cdx_digest: string | null;
  length: number;
  offset: number;
  warc: string;
}

export function cdxjLine(r: CdxjRow): string {
  const o: Record<string, string> = { url: r.url };
  if (r.mime) o.mime = r.mime;
  if (r.status !== null) o.status = String(r.status);
  if (r.cdx_digest) o.digest = r.cdx_digest;
  o.length = String(r.length);
  o.offset = String(r.offset);
  o.filename = r.warc;
  return `${r.surt} ${r.ts} ${JSON.stringify(o)}\n`;
}

/** Rows of the merged DB's records table that belong in the index, in index order. */
export function* cdxjRows(db: Database.Database): Generator<CdxjRow> {
  const stmt = db.prepare<[], CdxjRow>(
    `SELECT surt, ts, url, mime, status, cdx_digest, length, offset, warc FROM records
     WHERE type IN ('response', 'revisit', 'resource') AND surt IS NOT NULL AND NOT (type = 'resource' AND mime = 'application/warc-fields')
     ORDER BY surt, ts, warc, offset`,
  );
  yield* stmt.iterate();
}

/** Writes the sorted CDXJ file atomically (temp file + rename). Returns the number of lines. */
export async function writeCdxj(db: Database.Database, path: string): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  const out = createWriteStream(tmp);
  let n = 0;
  for (const row of cdxjRows(db)) {
    n++;
    if (!out.write(cdxjLine(row))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  await rename(tmp, path);
  return n;
}
