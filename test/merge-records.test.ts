import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { surtOf } from '../storage/curate/cdxj.js';
import { missingMedia } from '../storage/curate/coverage.js';
import { mergeShards } from '../storage/curate/merge.js';
import { scanMembers } from '../storage/warc/gzip-members.js';
import { sha1Of } from '../storage/warc/warc-record.js';
import { WarcWriter, type RevisitTarget } from '../storage/warc/warc-writer.js';
import { httpCapture } from './fixtures/http-capture.js';
import { makeShard } from './fixtures/make-shard.js';
import { readWarcDir } from './fixtures/warc-records.js';

// What merge writes about each record it keeps (merged.sqlite and the CDXJ), how revisits are
// weighed against full responses, and how a foreign tool's records that come before their
// anchor (wget writes the request first) follow it when it is dropped.

const run = promisify(execFile);
const B = 'http://127.0.0.1:8080';
let tmp: string;
let server: Server;
let base: string;

interface Item {
  url: string;
  body: string;
  status?: number;
  contentType?: string;
  headers?: Record<string, string>;
  /** Written as a revisit of this (absent) record. */
  revisitOf?: RevisitTarget;
}

async function warcOf(label: string, items: Item[]): Promise<string> {
  const dir = join(tmp, label);
  const writer = new WarcWriter({ dir, prefix: 'demo', node: label, maxFileBytes: 1 << 30, warcinfo: { software: 'lifeboat-test' } });
  let at = Date.parse('2024-05-01T12:00:00Z');
  for (const it of items) {
    await writer.writeCapture(httpCapture(it.url, it.body, { status: it.status ?? 200, contentType: it.contentType, headers: it.headers, at: new Date((at += 1000)) }), it.revisitOf ? { revisitOf: it.revisitOf } : {});
  }
  await writer.close();
  const [name] = await readdir(dir);
  return join(dir, name!);
}

function rows<T>(out: string, sql: string): T[] {
  const db = new Database(join(out, 'merged.sqlite'), { readonly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

const digestOf = (body: string): string => sha1Of(Buffer.from(body)).slice('sha1:'.length);

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-merge-records-'));
  server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`the page at ${req.url}`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('merge: what is recorded for each kept record', () => {
  it('indexes responses (SURT, time, status, MIME, digest, encoding) and never requests; counts the bytes it wrote', async () => {
    const input = await warcOf('indexed', [
      { url: `${B}/api/v1/posts/7`, body: '{"error":"not found"}', status: 404, contentType: 'application/json' },
      { url: `${B}/media/a.gif`, body: 'GIF89a', contentType: 'image/gif', headers: { 'Content-Encoding': 'identity' } },
      { url: `${B}/p/9`, body: 'compressed bytes', contentType: 'text/html', headers: { 'Content-Encoding': ' GZIP ' } },
    ]);
    const out = join(tmp, 'out-indexed');
    const r = await mergeShards({ inputs: [input], out });
    expect(r.defects).toEqual([]);
    type Row = { type: string; url: string | null; surt: string | null; ts: string | null; status: number | null; mime: string; cdx_digest: string | null; encoding: string | null; length: number };
    const all = rows<Row>(out, 'SELECT type, url, surt, ts, status, mime, cdx_digest, encoding, length FROM records ORDER BY url, type');
    const responses = all.filter((x) => x.type === 'response');
    expect(responses.map((x) => [x.url, x.surt, x.status, x.mime, x.cdx_digest, x.encoding])).toEqual([
      [`${B}/api/v1/posts/7`, surtOf(`${B}/api/v1/posts/7`), 404, 'application/json', digestOf('{"error":"not found"}'), null],
      [`${B}/media/a.gif`, surtOf(`${B}/media/a.gif`), 200, 'image/gif', digestOf('GIF89a'), null],
      [`${B}/p/9`, surtOf(`${B}/p/9`), 200, 'text/html', digestOf('compressed bytes'), 'gzip'],
    ]);
    expect(responses.map((x) => x.ts)).toEqual(['20240501120001', '20240501120002', '20240501120003']);
    const requests = all.filter((x) => x.type === 'request');
    expect(requests).toHaveLength(3);
    for (const q of requests) expect([q.surt, q.status, q.encoding]).toEqual([null, null, null]);
    // The CDXJ: one line per response, none for the requests or the warcinfo.
    const cdxj = (await readFile(join(out, 'indexes', 'index.cdxj'), 'utf8')).trimEnd().split('\n');
    expect(cdxj.map((l) => JSON.parse(l.slice(l.indexOf('{'))).url).sort()).toEqual(responses.map((x) => x.url).sort());
    // Bytes written: every kept record's member, as indexed.
    expect(r.bytesWritten).toBe(all.reduce((n, x) => n + x.length, 0));
    // The output files are listed, closed, with their real sizes.
    const warcs = rows<{ name: string; size: number; state: string }>(out, 'SELECT name, size, state FROM warcs ORDER BY name');
    const files = (await readdir(join(out, 'warcs'))).sort();
    expect(warcs.map((w) => w.name)).toEqual(files);
    for (const w of warcs) expect([w.state, w.size]).toEqual(['closed', (await stat(join(out, 'warcs', w.name))).size]);
    // The input's own warcinfo is kept, marked with where it came from; nothing else is marked.
    const out1 = await readWarcDir(join(out, 'warcs'));
    const copied = out1.filter((x) => x.headers['WARC-Lifeboat-Copied-From']);
    expect(copied.map((x) => [x.type, x.headers['WARC-Lifeboat-Copied-From']])).toEqual([['warcinfo', input.split('/').at(-1)]]);
    // The input's counts.
    expect(rows(out, 'SELECT kind, profile, records_read, records_kept, duplicates FROM inputs')).toEqual([
      { kind: 'warc', profile: null, records_read: 7, records_kept: 7, duplicates: 0 },
    ]);
  });
});

describe('merge: revisits against full responses', () => {
  it('a revisit never stands in for a payload: the full response after it is kept too; a later revisit of it is dropped', async () => {
    const orphan: RevisitTarget = { recordId: '<urn:uuid:00000000-0000-4000-8000-000000000001>', url: `${B}/media/x.gif`, date: '2024-04-01T00:00:00Z' };
    const first = await warcOf('revisit-first', [
      { url: `${B}/media/x.gif`, body: 'GIF89a-x', contentType: 'image/gif', revisitOf: orphan },
      { url: `${B}/media/x.gif`, body: 'GIF89a-x', contentType: 'image/gif' },
    ]);
    const later = await warcOf('revisit-later', [{ url: `${B}/media/x.gif`, body: 'GIF89a-x', contentType: 'image/gif', revisitOf: orphan }]);
    const out = join(tmp, 'out-revisit');
    const r = await mergeShards({ inputs: [first, later], out });
    expect(r.defects).toEqual([]);
    const kept = rows<{ type: string; record_id: string }>(out, `SELECT type, record_id FROM records WHERE url = '${B}/media/x.gif' AND type != 'request' ORDER BY type`);
    expect(kept.map((k) => k.type)).toEqual(['response', 'revisit']);
    const dropped = rows<{ type: string; kept_record_id: string; payload_digest: string; date: string }>(out, `SELECT type, kept_record_id, payload_digest, date FROM duplicates WHERE type != 'request'`);
    expect(dropped).toEqual([{ type: 'revisit', kept_record_id: kept.find((k) => k.type === 'response')!.record_id, payload_digest: sha1Of(Buffer.from('GIF89a-x')), date: '2024-05-01T12:00:01.000Z' }]);
    // The kept revisit is indexed like a response (replay tools resolve it to the payload).
    expect(rows<{ surt: string }>(out, `SELECT surt FROM records WHERE type = 'revisit'`)).toEqual([{ surt: surtOf(`${B}/media/x.gif`) }]);
    const cdxj = (await readFile(join(out, 'indexes', 'index.cdxj'), 'utf8')).trimEnd().split('\n');
    expect(cdxj).toHaveLength(2);
  });
});

describe('merge: records written before their anchor (wget)', () => {
  it('a dropped response takes along the request wget wrote before it; a kept one keeps it', async () => {
    const fetch = async (name: string, paths: string[]): Promise<string> => {
      const prefix = join(tmp, name);
      await run('wget', ['--no-proxy', '-q', '-O', '/dev/null', '-e', 'robots=off', `--warc-file=${prefix}`, ...paths.map((p) => `${base}${p}`)]);
      return `${prefix}.warc.gz`;
    };
    const w1 = await fetch('wget-1', ['/a', '/b']);
    const w2 = await fetch('wget-2', ['/a', '/b', '/c']);
    const out = join(tmp, 'out-wget');
    const r = await mergeShards({ inputs: [w1, w2], out });
    expect(r.defects).toEqual([]);
    const kept = rows<{ type: string; url: string }>(out, `SELECT type, url FROM records WHERE url LIKE 'http%' ORDER BY url, type`);
    expect(kept.map((k) => `${k.type} ${k.url.slice(base.length)}`)).toEqual(['request /a', 'response /a', 'request /b', 'response /b', 'request /c', 'response /c']);
    const dropped = rows<{ type: string; url: string }>(out, `SELECT type, url FROM duplicates WHERE url LIKE 'http%' ORDER BY url, type`);
    expect(dropped.map((k) => `${k.type} ${k.url.slice(base.length)}`)).toEqual(['request /a', 'response /a', 'request /b', 'response /b']);
  });
});

describe('merge: inputs, defects and what was merged before', () => {
  it('records a shard input with its profile, node and software', async () => {
    const shard = join(tmp, 'shard-prov');
    await makeShard({ dir: shard, start: 1, end: 5, node: 'dora' });
    const out = join(tmp, 'out-prov');
    await mergeShards({ inputs: [shard], out });
    expect(rows(out, 'SELECT kind, profile, node, software FROM inputs')).toEqual([{ kind: 'shard', profile: 'demo', node: 'dora', software: 'lifeboat-test' }]);
  });

  it('a record met again in another file (same WARC-Record-ID) is merged once, not copied twice', async () => {
    const input = await warcOf('again', [
      { url: `${B}/p/1`, body: 'one' },
      { url: `${B}/p/2`, body: 'two' },
    ]);
    const members: { offset: number; length: number }[] = [];
    for await (const m of scanMembers(input)) members.push(m);
    // A second file holding the first three members (warcinfo, response, request of /p/1): another sha256.
    const part = join(tmp, 'again-part.warc.gz');
    await writeFile(part, (await readFile(input)).subarray(0, members[2]!.offset + members[2]!.length));
    const out = join(tmp, 'out-again');
    const r = await mergeShards({ inputs: [input, part], out });
    expect(r.defects).toEqual([]);
    expect(r.alreadyMerged).toBe(3);
    expect(rows<{ n: number }>(out, 'SELECT COUNT(*) AS n FROM records')[0]!.n).toBe(5);
  });

  it('keeps the defects it met in merged.sqlite, with file and offset', async () => {
    const input = await warcOf('damaged', [
      { url: `${B}/p/1`, body: 'one '.repeat(100) },
      { url: `${B}/p/2`, body: 'two '.repeat(100) },
    ]);
    const members: { offset: number; length: number }[] = [];
    for await (const m of scanMembers(input)) members.push(m);
    const bad = join(tmp, 'damaged-copy.warc.gz');
    const bytes = Buffer.from(await readFile(input));
    bytes[members[3]!.offset + 30]! ^= 0xff; // the response of /p/2
    await writeFile(bad, bytes);
    const out = join(tmp, 'out-damaged');
    const r = await mergeShards({ inputs: [bad], out });
    expect(r.defects.map((d) => [d.file, d.offset])).toEqual([[bad, members[3]!.offset]]);
    const stored = rows<{ file: string; offset: number; what: string }>(out, 'SELECT file, offset, what FROM defects');
    expect(stored.map((d) => [d.file, d.offset])).toEqual([[bad, members[3]!.offset]]);
    expect(stored[0]!.what).toBeTruthy();
  });

  it('merges into a merged.sqlite made before the records had an encoding column', async () => {
    const input = await warcOf('old-db-1', [{ url: `${B}/p/1`, body: 'one' }]);
    const out = join(tmp, 'out-old-db');
    await mergeShards({ inputs: [input], out });
    const db = new Database(join(out, 'merged.sqlite'));
    db.exec('ALTER TABLE records DROP COLUMN encoding');
    db.close();
    const next = await warcOf('old-db-2', [{ url: `${B}/p/2`, body: 'two', headers: { 'Content-Encoding': 'br' } }]);
    const r = await mergeShards({ inputs: [next], out });
    expect(r.defects).toEqual([]);
    expect(rows(out, `SELECT url, encoding FROM records WHERE type = 'response' ORDER BY url`)).toEqual([
      { url: `${B}/p/1`, encoding: null },
      { url: `${B}/p/2`, encoding: 'br' },
    ]);
  });

  it('merges into a merged.sqlite made before duplicates had a place and media a reason: a duplicate is still recorded', async () => {
    const input = await warcOf('old-dup-1', [{ url: `${B}/p/1`, body: 'one' }]);
    const out = join(tmp, 'out-old-dup');
    await mergeShards({ inputs: [input], out });
    const db = new Database(join(out, 'merged.sqlite'));
    db.exec('ALTER TABLE duplicates DROP COLUMN warc; ALTER TABLE duplicates DROP COLUMN offset; ALTER TABLE duplicates DROP COLUMN length; ALTER TABLE media_left DROP COLUMN reason');
    db.close();
    const again = await warcOf('old-dup-2', [{ url: `${B}/p/1`, body: 'one' }, { url: `${B}/p/3`, body: 'three' }]);
    const r = await mergeShards({ inputs: [again], out });
    expect(r.defects).toEqual([]);
    expect(rows(out, `SELECT url, type, warc FROM duplicates WHERE type = 'response'`)).toEqual([{ url: `${B}/p/1`, type: 'response', warc: null }]);
    // What `status` lists as missing media reads the reason: the old database answers it too.
    const read = new Database(join(out, 'merged.sqlite'), { readonly: true });
    try {
      expect([...missingMedia(read)]).toEqual([]);
    } finally {
      read.close();
    }
  });
});
