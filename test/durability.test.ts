import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StorageError } from '../config/errors.js';
import { GroupCommit } from '../storage/shard/group-commit.js';
import { ShardDb } from '../storage/shard/shard-db.js';
import { WarcWriter } from '../storage/warc/warc-writer.js';
import { httpCapture } from './fixtures/http-capture.js';

// ARCHITECTURE.md "Durable": an ID becomes final only in the transaction that follows the fsync covering its
// records. A real WarcWriter and a real ShardDb; the test listens at the seam between them
// (the writer's flush and the shard's transaction) and keeps the order of what happened.

let tmp: string;
let writer: WarcWriter;
let db: ShardDb;
let events: string[];
/** Records written (writer.recordsWritten) when the last completed fsync started. */
let durableRecords: number;
let failNextFlush: Error | undefined;
let duringFlush: (() => Promise<void>) | undefined;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-durability-'));
  writer = new WarcWriter({ dir: join(tmp, 'warcs'), prefix: 'demo', node: 't', maxFileBytes: 1 << 30, warcinfo: { software: 'lifeboat-test' } });
  db = new ShardDb(join(tmp, 'shard.sqlite'));
  events = [];
  durableRecords = 0;
  failNextFlush = undefined;
  duringFlush = undefined;
  const flush = writer.flush.bind(writer);
  writer.flush = async () => {
    const covers = writer.recordsWritten;
    events.push(`fsync ${covers}`);
    const hook = duringFlush;
    duringFlush = undefined;
    if (hook) await hook();
    if (failNextFlush) {
      const err = failNextFlush;
      failNextFlush = undefined;
      events.push('fsync failed');
      throw err;
    }
    await flush();
    durableRecords = Math.max(durableRecords, covers);
    events.push(`fsync done ${covers}`);
  };
  const transaction = db.transaction.bind(db);
  db.transaction = <T>(fn: () => T): T => {
    events.push('tx');
    const out = transaction(fn);
    events.push('tx done');
    return out;
  };
});

afterEach(async () => {
  await writer.abandon();
  db.close();
  await rm(tmp, { recursive: true, force: true });
});

/** What the crawl loop does for one ID: write its capture, then queue the op that makes it final. */
async function crawlId(commits: GroupCommit, id: number): Promise<void> {
  await writer.writeCapture(httpCapture(`http://127.0.0.1:8080/api/v1/posts/${id}`, `{"id":${id}}`, { contentType: 'application/json' }));
  const needs = writer.recordsWritten;
  commits.add(() => {
    events.push(`final ${id}`);
    // The promise itself: the records of this ID are covered by a completed fsync.
    expect(durableRecords, `ID ${id} made final before its records were fsynced`).toBeGreaterThanOrEqual(needs);
    db.recordOutcome({ id, status: 'archived', httpStatus: 200, attempts: 1, lastError: null });
  }, id);
}

describe('group commit durability order', () => {
  it('fsyncs the WARC, then makes the batch final in one transaction, then reports the IDs', async () => {
    const committed: number[][] = [];
    const commits = new GroupCommit(writer, db, (ids) => committed.push([...ids]));
    await crawlId(commits, 1);
    await crawlId(commits, 2);
    events.push('commit');
    await commits.commit();
    // warcinfo + 2 × (request, response) = 5 records covered by the fsync before the transaction.
    expect(events).toEqual(['commit', 'fsync 5', 'fsync done 5', 'tx', 'final 1', 'final 2', 'tx done']);
    expect(committed).toEqual([[1, 2]]);
    expect(db.idState(1)?.status).toBe('archived');
    expect(db.idState(2)?.status).toBe('archived');
  });

  it('an ID whose record is written while an fsync runs waits for the next fsync', async () => {
    const committed: number[][] = [];
    const commits = new GroupCommit(writer, db, (ids) => committed.push([...ids]));
    await crawlId(commits, 1);
    let second: Promise<number[]> | undefined;
    duringFlush = async () => {
      await crawlId(commits, 2);
      second = commits.commit();
    };
    await commits.commit();
    await second;
    expect(events).toEqual(['fsync 3', 'fsync done 3', 'tx', 'final 1', 'tx done', 'fsync 5', 'fsync done 5', 'tx', 'final 2', 'tx done']);
    expect(committed).toEqual([[1], [2]]);
  });

  it('a failed fsync makes nothing final: no transaction, no report, and a fresh open of the shard sees the IDs not done', async () => {
    const committed: number[][] = [];
    const commits = new GroupCommit(writer, db, (ids) => committed.push([...ids]));
    await crawlId(commits, 7);
    await crawlId(commits, 8);
    failNextFlush = new StorageError('fsync failed: EIO', { code: 'E_WARC_SYNC' });
    await expect(commits.commit()).rejects.toMatchObject({ code: 'E_WARC_SYNC' });
    expect(events).toEqual(['fsync 5', 'fsync failed']);
    // The writer stays broken: every later commit fails the same way, and nothing more is synced.
    await crawlId(commits, 9).catch(() => undefined);
    await expect(commits.commit()).rejects.toMatchObject({ code: 'E_WARC_SYNC' });
    expect(events).toEqual(['fsync 5', 'fsync failed']);
    expect(committed).toEqual([]);
    const fresh = new ShardDb(join(tmp, 'shard.sqlite'));
    try {
      expect(fresh.idState(7)).toBeUndefined();
      expect(fresh.idState(8)).toBeUndefined();
    } finally {
      fresh.close();
    }
  });

  it('work an op returns starts after the transaction; ops without an ID are applied but not reported as final', async () => {
    const committed: number[][] = [];
    const commits = new GroupCommit(writer, db, (ids) => committed.push([...ids]));
    await writer.writeCapture(httpCapture('http://127.0.0.1:8080/media/a.gif', 'GIF89a'));
    commits.add(() => {
      events.push('media url done');
      return () => events.push('start queued media');
    });
    await commits.commit();
    expect(events).toEqual(['fsync 3', 'fsync done 3', 'tx', 'media url done', 'tx done', 'start queued media']);
    expect(committed).toEqual([]);
    await crawlId(commits, 3);
    commits.add(() => undefined);
    await commits.commit();
    expect(committed).toEqual([[3]]);
  });

  it('a commit with nothing to make final neither fsyncs nor opens a transaction', async () => {
    const commits = new GroupCommit(writer, db, undefined);
    expect(await commits.commit()).toEqual([]);
    expect(events).toEqual([]);
  });
});
