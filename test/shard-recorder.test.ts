import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ShardDb } from '../storage/shard/shard-db.js';
import { ShardRecorder } from '../storage/shard/shard-recorder.js';
import { httpCapture } from './fixtures/http-capture.js';
import { readWarcDir } from './fixtures/warc-records.js';

// The ShardRecorder through its own API, on a real directory: WARC bytes are fsynced before the
// transaction that makes their IDs final. The seam is below the recorder: every FileHandle.sync
// (the fsync) and every ShardDb.transaction in this process are logged in order, with the size
// of the file each fsync covered.

type Event = { kind: 'fsync'; size: number } | { kind: 'tx' };

let tmp: string;
let events: Event[];
let failSync: Error | undefined;
const restore: (() => void)[] = [];

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-recorder-'));
  events = [];
  failSync = undefined;
  const probe = await open(join(tmp, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { sync: (this: { stat(): Promise<{ size: number }> }) => Promise<void> };
  await probe.close();
  const sync = proto.sync;
  proto.sync = async function (this: { stat(): Promise<{ size: number }> }) {
    const { size } = await this.stat();
    if (failSync) {
      const err = failSync;
      failSync = undefined;
      throw err;
    }
    await sync.call(this);
    events.push({ kind: 'fsync', size });
  };
  const tx = ShardDb.prototype.transaction;
  ShardDb.prototype.transaction = function <T>(this: ShardDb, fn: () => T): T {
    events.push({ kind: 'tx' });
    return tx.call(this, fn) as T;
  };
  restore.push(() => {
    proto.sync = sync;
    ShardDb.prototype.transaction = tx;
  });
});

afterEach(async () => {
  for (const r of restore.splice(0)) r();
  await rm(tmp, { recursive: true, force: true });
});

function recorder(): ShardRecorder {
  return new ShardRecorder({ dir: tmp, warc: { prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: { software: 'lifeboat-test' } } });
}

const post = (id: number, body = `{"id":${id}}`) => httpCapture(`http://127.0.0.1:8080/api/v1/posts/${id}`, body, { contentType: 'application/json' });
const final = (id: number, rows: Awaited<ReturnType<ShardRecorder['recordCapture']>>['rows'], media: string[] = []) => ({
  id, status: 'archived' as const, httpStatus: 200, attempts: 1, lastError: null, rows, relatedIds: [], media,
});

function readDb<T>(fn: (db: ShardDb) => T): T {
  const db = new ShardDb(join(tmp, 'shard.sqlite'), { readonly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

describe('ShardRecorder', () => {
  it('fsyncs the WARC bytes of an ID before the transaction that makes it final', async () => {
    const r = recorder();
    const one = await r.recordCapture([post(1)], 'post', 1);
    const done = r.finalizeId(final(1, one.rows));
    expect(readDb((db) => db.idState(1)), 'final before any commit').toBeUndefined();
    const ids = await r.commit();
    expect(ids).toEqual([1]);
    await done;
    const i = events.findIndex((e) => e.kind === 'tx' && events.slice(0, events.indexOf(e)).some((x) => x.kind === 'fsync'));
    const firstTx = events.findIndex((e) => e.kind === 'tx');
    expect(firstTx, `events: ${JSON.stringify(events)}`).toBe(i);
    const lastSync = events.slice(0, firstTx).filter((e) => e.kind === 'fsync').at(-1) as { size: number };
    const end = Math.max(...one.rows.flatMap((row) => [row.response.offset + row.response.length, row.request.offset + row.request.length]));
    expect(lastSync.size, 'the fsync before the transaction covers the ID’s records').toBeGreaterThanOrEqual(end);
    expect(readDb((db) => db.idState(1))?.status).toBe('archived');
    await r.close();
  });

  it('a failed fsync makes nothing final: the finalize and the commit reject, the ID stays to be crawled again', async () => {
    const r = recorder();
    const one = await r.recordCapture([post(1)], 'post', 1);
    const done = r.finalizeId(final(1, one.rows));
    failSync = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    await expect(r.commit()).rejects.toThrow(/fsync/);
    await expect(done).rejects.toThrow(/fsync/);
    expect(events.some((e) => e.kind === 'tx')).toBe(false);
    await expect(r.close()).rejects.toThrow();
    expect(readDb((db) => db.idState(1))).toBeUndefined();
  });

  it('the same URL and payload again is a revisit: before its commit, after it, and in a later recorder', async () => {
    const r = recorder();
    const a = await r.recordCapture([post(1)], 'post', 1);
    const b = await r.recordCapture([post(1)], 'post', 1);
    expect(b.rows[0]!.revisitOf).toBe(a.rows[0]!.response.recordId);
    expect(b.rows[0]!.response.type).toBe('revisit');
    void r.finalizeId(final(1, [...a.rows, ...b.rows]));
    await r.commit();
    const c = await r.recordCapture([post(1, '{"id":1,"edited":true}')], 'post', 1);
    expect(c.rows[0]!.revisitOf, 'another payload is stored in full').toBeNull();
    await r.close();
    const later = recorder();
    const d = await later.recordCapture([post(1)], 'post', 1);
    expect(d.rows[0]!.revisitOf).toBe(a.rows[0]!.response.recordId);
    await later.close();
  });

  it('answers each media URL once across IDs (what to fetch next), and records media outcomes', async () => {
    const r = recorder();
    const m1 = r.finalizeId(final(1, (await r.recordCapture([post(1)], 'post', 1)).rows, ['http://127.0.0.1:8080/m/a.png', 'http://127.0.0.1:8080/m/b.png']));
    const m2 = r.finalizeId(final(2, (await r.recordCapture([post(2)], 'post', 2)).rows, ['http://127.0.0.1:8080/m/b.png']));
    await r.commit();
    expect(await m1).toEqual(['http://127.0.0.1:8080/m/a.png', 'http://127.0.0.1:8080/m/b.png']);
    expect(await m2).toEqual([]);
    const img = await r.recordCapture([httpCapture('http://127.0.0.1:8080/m/a.png', 'PNG', { contentType: 'image/png' })], 'media', 1);
    const media = r.finalizeMedia({ url: 'http://127.0.0.1:8080/m/a.png', state: 'done', rows: img.rows, attempts: 1, httpStatus: 200, lastError: null });
    void r.finalizeMedia({ url: 'http://127.0.0.1:8080/m/b.png', state: 'failed', rows: [], attempts: 8, lastError: 'HTTP 503' });
    expect(await r.commit(), 'media makes no ID final').toEqual([]);
    await media;
    await r.close();
    expect(readDb((db) => db.urlCounts())).toMatchObject({ done: 1, failed: 1 });
  });

  it('writes the warcs rows: open while written, closed with the file’s size and sha256', async () => {
    const r = recorder();
    await r.recordCapture([post(1)], 'post', 1);
    const [open1] = readDb((db) => db.warcs());
    expect(open1?.state).toBe('open');
    await r.close();
    expect(r.warcsClosed).toBe(1);
    const [closed] = readDb((db) => db.warcs());
    const bytes = await readFile(join(tmp, 'warcs', closed!.name));
    const { createHash } = await import('node:crypto');
    expect(closed).toMatchObject({ name: open1!.name, state: 'closed', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), records: 3 });
  });

  it('its frontier view counts failed IDs as not final and hands out related IDs of its partition', async () => {
    const r = recorder();
    const rows = (await r.recordCapture([post(1)], 'post', 1)).rows;
    void r.finalizeId({ ...final(1, rows), relatedIds: [4, 5, 6] });
    void r.finalizeId({ id: 2, status: 'failed', httpStatus: null, attempts: 8, lastError: 'x', rows: [], relatedIds: [], media: [] });
    await r.commit();
    const view = r.frontierSource({ index: 0, count: 2 });
    expect(view.isFinal(1)).toBe(true);
    expect(view.isFinal(2)).toBe(false);
    expect(view.takeRelated(10)).toEqual([4, 6]);
    await r.close();
  });

  it('reports the records and bytes a fetch wrote, and keeps each hop’s content type in its capture row', async () => {
    const r = recorder();
    const hops = [
      httpCapture('http://127.0.0.1:8080/p/1', '', { status: 301, contentType: 'text/html', headers: { Location: '/api/v1/posts/1' } }),
      post(1),
    ];
    const rec = await r.recordCapture(hops, 'post', 1);
    void r.finalizeId(final(1, rec.rows));
    await r.close();
    const [warc] = readDb((db) => db.warcs());
    const { size } = await stat(join(tmp, 'warcs', warc!.name));
    // The file is its warcinfo record, then exactly what this fetch wrote.
    expect(rec.records).toBe(4);
    expect(rec.bytes).toBe(size - rec.rows[0]!.response.offset);
    const sqlite = new Database(join(tmp, 'shard.sqlite'), { readonly: true });
    const rows = sqlite.prepare('SELECT url, content_type FROM captures ORDER BY url').all();
    sqlite.close();
    expect(rows).toEqual([
      { url: 'http://127.0.0.1:8080/api/v1/posts/1', content_type: 'application/json' },
      { url: 'http://127.0.0.1:8080/p/1', content_type: 'text/html' },
    ]);
  });

  it('a failed or incomplete ID is not reported final; an incomplete one keeps its fields and captures for the next run', async () => {
    const r = recorder();
    const rows = (await r.recordCapture([post(1)], 'post', 1)).rows;
    void r.finalizeId({ ...final(1, rows), incomplete: 'media: HTTP 503 after 8 attempts', fieldsJson: '{"title":"kept"}' });
    void r.finalizeId({ id: 2, status: 'failed', httpStatus: null, attempts: 8, lastError: 'x', rows: [], relatedIds: [], media: [] });
    void r.finalizeId(final(3, (await r.recordCapture([post(3)], 'post', 3)).rows));
    expect(await r.commit(), 'only the complete ID is final (what a node reports done)').toEqual([3]);
    await r.close();
    const later = recorder();
    expect(later.earlierCaptures(1)).toEqual({ names: new Set(['post']), fields: { title: 'kept' } });
    expect(later.earlierCaptures(3), 'a complete ID is not crawled again').toBeUndefined();
    const view = later.frontierSource({ index: 0, count: 1 });
    expect(view.isFinal(1)).toBe(false);
    expect(view.isFinal(3)).toBe(true);
    expect(view.isFinal(4), 'an ID never seen').toBe(false);
    expect([...view.finalRanges()], 'what a resumed run skips').toEqual([{ start: 3, end: 3 }]);
    await later.close();
    expect(readDb((db) => db.idState(1))).toMatchObject({ status: 'archived', incomplete: 'media: HTTP 503 after 8 attempts' });
  });

  it('queues for the frontier only related IDs the shard has no state for', async () => {
    const r = recorder();
    void r.finalizeId(final(3, (await r.recordCapture([post(3)], 'post', 3)).rows));
    await r.commit();
    void r.finalizeId({ ...final(1, (await r.recordCapture([post(1)], 'post', 1)).rows), relatedIds: [3, 7] });
    await r.commit();
    expect(r.frontierSource({ index: 0, count: 1 }).takeRelated(10)).toEqual([7]);
    await r.close();
  });

  it('records a media URL’s attempts, HTTP status and error, and answers media a stylesheet refers to once across the shard', async () => {
    const r = recorder();
    const m1 = r.finalizeId(final(1, (await r.recordCapture([post(1)], 'post', 1)).rows, ['http://127.0.0.1:8080/m/a.css']));
    await r.commit();
    expect(await m1).toEqual(['http://127.0.0.1:8080/m/a.css']);
    const fresh = r.queueMedia(['http://127.0.0.1:8080/m/a.css', 'http://127.0.0.1:8080/m/font.woff2'], 1);
    void r.finalizeMedia({ url: 'http://127.0.0.1:8080/m/a.css', state: 'failed', rows: [], attempts: 3, httpStatus: 404, lastError: 'HTTP 404' });
    await r.commit();
    expect(await fresh).toEqual(['http://127.0.0.1:8080/m/font.woff2']);
    await r.close();
    const sqlite = new Database(join(tmp, 'shard.sqlite'), { readonly: true });
    const rows = sqlite.prepare('SELECT url, post_id, state, attempts, http_status, last_error FROM urls ORDER BY url').all();
    sqlite.close();
    expect(rows).toEqual([
      { url: 'http://127.0.0.1:8080/m/a.css', post_id: 1, state: 'failed', attempts: 3, http_status: 404, last_error: 'HTTP 404' },
      { url: 'http://127.0.0.1:8080/m/font.woff2', post_id: 1, state: 'queued', attempts: 0, http_status: null, last_error: null },
    ]);
  });

  it('writes a screenshot as a resource record', async () => {
    const r = recorder();
    const png = Buffer.from('\x89PNG\r\n\x1a\n-not-really-a-png');
    const w = await r.recordResource({ url: 'http://127.0.0.1:8080/posts/1#screenshot', contentType: 'image/png', data: png });
    await r.close();
    expect(w.type).toBe('resource');
    const records = await readWarcDir(join(tmp, 'warcs'));
    const res = records.find((x) => x.type === 'resource');
    expect(res).toMatchObject({ url: 'http://127.0.0.1:8080/posts/1#screenshot', blockDigestOk: true });
    expect(res!.headers['Content-Type']).toBe('image/png');
    expect(res!.payload.equals(png)).toBe(true);
  });

  it('close and abandon leave shard.sqlite complete on its own (the connection is closed, its WAL folded in)', async () => {
    const copyAlone = async (): Promise<string> => {
      const dir = join(tmp, `copy-${Math.random().toString(36).slice(2)}`);
      await mkdir(dir);
      await copyFile(join(tmp, 'shard.sqlite'), join(dir, 'shard.sqlite'));
      return dir;
    };
    const r = recorder();
    void r.finalizeId(final(1, (await r.recordCapture([post(1)], 'post', 1)).rows));
    await r.close();
    const a = await copyAlone();
    const dbA = new ShardDb(join(a, 'shard.sqlite'), { readonly: true });
    expect(dbA.idState(1)?.status, 'closed: the commit is in shard.sqlite itself').toBe('archived');
    dbA.close();

    const s = recorder();
    void s.finalizeId(final(2, (await s.recordCapture([post(2)], 'post', 2)).rows));
    await s.commit();
    void s.finalizeId(final(3, (await s.recordCapture([post(3)], 'post', 3)).rows));
    await s.abandon();
    const b = await copyAlone();
    const dbB = new ShardDb(join(b, 'shard.sqlite'), { readonly: true });
    expect(dbB.idState(2)?.status, 'abandoned: what was committed is in shard.sqlite itself').toBe('archived');
    expect(dbB.idState(3), 'abandoned: what was only queued is not').toBeUndefined();
    dbB.close();
    expect((await readdir(join(tmp, 'warcs'))).filter((f) => f.endsWith('.open')), 'abandoned: the WARC is left for the next run to repair').toHaveLength(1);
  });
});
