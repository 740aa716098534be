import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { finishedIn } from '../node/item.js';
import { ShardDb } from '../storage/shard/shard-db.js';

// Regression: a node reported a post finished while its media were still queued; killed then, with
// its lease handed on, the remainder left that post out and its media were never fetched by anyone
// (node-e2e saw 33 images of posts 803-830 missing after random kills).
describe('finishedIn: what a node reports finished', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lb-node-item-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const db = new ShardDb(path.join(dir, 'shard.sqlite'));
  db.transaction(() => {
    for (const id of [1, 2, 3, 4]) db.recordOutcome({ id, status: id === 4 ? 'failed' : 'archived', httpStatus: 200, attempts: 1, lastError: null });
    db.queueUrl('http://127.0.0.1:9/media/1-0.jpg', 1);
    db.queueUrl('http://127.0.0.1:9/media/2-0.jpg', 2);
    db.queueUrl('http://127.0.0.1:9/media/shared.png', 3);
  });
  db.setUrlState('http://127.0.0.1:9/media/2-0.jpg', 'done');
  db.setUrlState('http://127.0.0.1:9/media/shared.png', 'failed');
  db.close();
  const ranges = new RangeSet([{ start: 1, end: 10 }]);

  it('a post item that fetches its own media: an ID waits until none of its media is queued', () => {
    // 1 has a queued medium; 2's is done; 3's failed (a later run retries it; the ID is not held); 4 failed.
    expect(finishedIn(dir, ranges, { waitForMedia: true }).toJSON()).toEqual([[2, 3]]);
  });

  it('a post item whose media go to the tracker: final IDs as they are (the reporter sends media first)', () => {
    expect(finishedIn(dir, ranges).toJSON()).toEqual([[1, 3]]);
  });
});
