import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergeShards } from '../storage/curate/merge.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { sha1Of } from '../storage/warc/warc-record.js';
import { readWarc } from '../storage/warc/warc-reader.js';
import { WarcWriter } from '../storage/warc/warc-writer.js';
import { httpCapture } from './fixtures/http-capture.js';

// Merge keeps one copy per (URL, payload) — never fewer. Different URLs may share a payload
// (several posts' identical 404 bodies, one image at two URLs) and one URL may have two payloads
// (a post edited between crawls); each such pair is kept, only a true repeat is dropped. Checked
// inside one input (one batch), across two inputs of one merge (two batches) and across an
// incremental merge (the kept records are only in merged.sqlite by then).

const B = 'http://127.0.0.1:8080';
const NOT_FOUND = '{"error":"not found"}';
const GIF = 'GIF89a-the-same-image-bytes';
let tmp: string;

type Item = [url: string, body: string, status?: number];

/** One WARC file of full responses (no revisits: every capture is its own response record). */
async function warcOf(label: string, items: Item[]): Promise<string> {
  const dir = join(tmp, label);
  const writer = new WarcWriter({ dir, prefix: 'demo', node: label, maxFileBytes: 1 << 30, warcinfo: { software: 'lifeboat-test' } });
  let at = Date.parse('2024-05-01T12:00:00Z');
  for (const [url, body, status] of items) {
    await writer.writeCapture(httpCapture(url, body, { status: status ?? 200, at: new Date((at += 1000)) }));
  }
  await writer.close();
  const [name] = await readdir(dir);
  return join(dir, name!);
}

/** The (URL, payload) pairs of the response records in the merged output, sorted. */
async function keptPairs(out: string): Promise<string[]> {
  const pairs: string[] = [];
  for (const name of (await readdir(join(out, 'warcs'))).sort()) {
    for await (const item of readWarc(join(out, 'warcs', name))) {
      if (item.kind === 'defect') throw new Error(`defect in merged output: ${item.what}`);
      if (item.type === 'response') pairs.push(`${item.targetUri} ${item.payloadSha1}`);
    }
  }
  return pairs.sort();
}

const pair = (url: string, body: string): string => `${url} ${sha1Of(Buffer.from(body))}`;

let inputA: string;
let inputB: string;
let inputC: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-merge-dedupe-'));
  inputA = await warcOf('a', [
    [`${B}/api/v1/posts/7`, NOT_FOUND, 404],
    [`${B}/api/v1/posts/14`, NOT_FOUND, 404],
    [`${B}/api/v1/posts/21`, NOT_FOUND, 404],
    [`${B}/media/a.gif`, GIF],
    [`${B}/media/b.gif`, GIF],
    [`${B}/p/5`, 'post 5, first version'],
    [`${B}/p/5`, 'post 5, edited'],
    [`${B}/p/5`, 'post 5, first version'], // a true repeat: dropped
    [`${B}/media/a.gif`, GIF], // a true repeat: dropped
  ]);
  inputB = await warcOf('b', [
    [`${B}/api/v1/posts/28`, NOT_FOUND, 404], // a new URL with a payload already kept
    [`${B}/api/v1/posts/7`, NOT_FOUND, 404], // a repeat of A's: dropped
    [`${B}/media/c.gif`, GIF],
    [`${B}/p/5`, 'post 5, edited again'],
    [`${B}/p/5`, 'post 5, edited'], // a repeat of A's: dropped
  ]);
  inputC = await warcOf('c', [
    [`${B}/api/v1/posts/35`, NOT_FOUND, 404],
    [`${B}/api/v1/posts/14`, NOT_FOUND, 404], // dropped
    [`${B}/media/d.gif`, GIF],
    [`${B}/media/b.gif`, GIF], // dropped
    [`${B}/p/5`, 'post 5, edited a third time'],
    [`${B}/p/5`, 'post 5, edited again'], // dropped
  ]);
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const inA = [
  pair(`${B}/api/v1/posts/7`, NOT_FOUND),
  pair(`${B}/api/v1/posts/14`, NOT_FOUND),
  pair(`${B}/api/v1/posts/21`, NOT_FOUND),
  pair(`${B}/media/a.gif`, GIF),
  pair(`${B}/media/b.gif`, GIF),
  pair(`${B}/p/5`, 'post 5, first version'),
  pair(`${B}/p/5`, 'post 5, edited'),
];
const inB = [pair(`${B}/api/v1/posts/28`, NOT_FOUND), pair(`${B}/media/c.gif`, GIF), pair(`${B}/p/5`, 'post 5, edited again')];
const inC = [pair(`${B}/api/v1/posts/35`, NOT_FOUND), pair(`${B}/media/d.gif`, GIF), pair(`${B}/p/5`, 'post 5, edited a third time')];

describe('merge never drops a distinct (URL, payload)', () => {
  it('in one batch: equal bodies at different URLs and two bodies at one URL are all kept; only true repeats go', async () => {
    const out = join(tmp, 'out-a');
    const r = await mergeShards({ inputs: [inputA], out });
    expect(r.defects).toEqual([]);
    expect(await keptPairs(out)).toEqual([...inA].sort());
    // 9 captures = 18 records + warcinfo; 2 repeats dropped with their request records.
    expect(r.recordsRead).toBe(19);
    expect(r.duplicates).toBe(4);
    expect(r.recordsKept).toBe(15);
  });

  it('across batches (two inputs of one merge): a payload kept from the first input does not swallow a new URL in the second', async () => {
    const out = join(tmp, 'out-ab');
    const r = await mergeShards({ inputs: [inputA, inputB], out });
    expect(r.defects).toEqual([]);
    expect(await keptPairs(out)).toEqual([...inA, ...inB].sort());
    expect(r.duplicates).toBe(4 + 4);
    const db = new Database(join(out, 'merged.sqlite'), { readonly: true });
    try {
      const dropped = db.prepare<[], { url: string; kept: string }>(
        `SELECT d.url AS url, k.url AS kept FROM duplicates d JOIN records k ON k.record_id = d.kept_record_id WHERE d.type = 'response' ORDER BY d.url`,
      ).all();
      // Every dropped response points at a kept record of the same URL.
      expect(dropped.map((d) => [d.url, d.kept])).toEqual([
        [`${B}/api/v1/posts/7`, `${B}/api/v1/posts/7`],
        [`${B}/media/a.gif`, `${B}/media/a.gif`],
        [`${B}/p/5`, `${B}/p/5`],
        [`${B}/p/5`, `${B}/p/5`],
      ]);
    } finally {
      db.close();
    }
    expect((await verifyPaths([out])).defects).toEqual([]);
  });

  it('across merges (incremental): the kept copies are only in merged.sqlite, and still nothing distinct is dropped', async () => {
    const out = join(tmp, 'out-inc');
    await mergeShards({ inputs: [inputA, inputB], out });
    const r = await mergeShards({ inputs: [inputC], out });
    expect(r.defects).toEqual([]);
    expect(r.inputs.map((i) => i.status)).toEqual(['merged']);
    expect(await keptPairs(out)).toEqual([...inA, ...inB, ...inC].sort());
    expect(r.duplicates).toBe(6);
    expect(r.recordsKept).toBe(1 + 3 * 2); // C's warcinfo and 3 new (request, response) pairs
    expect((await verifyPaths([out])).defects).toEqual([]);
  });
});
