import { open, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ShardDb } from '../storage/shard/shard-db.js';
import { ShardRecorder } from '../storage/shard/shard-recorder.js';
import { httpCapture } from './fixtures/http-capture.js';

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
});
