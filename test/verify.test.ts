import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyPaths } from '../storage/curate/verify.js';
import { readWarc, type ReadRecord } from '../storage/warc/warc-reader.js';
import { makeShard } from './fixtures/make-shard.js';

let tmp: string;
let good: string;

async function copyShard(name: string): Promise<{ dir: string; warc: string; records: ReadRecord[] }> {
  const dir = join(tmp, name);
  await cp(good, dir, { recursive: true });
  const warcName = (await readdir(join(dir, 'warcs')))[0]!;
  const warc = join(dir, 'warcs', warcName);
  const records: ReadRecord[] = [];
  for await (const item of readWarc(warc)) if (item.kind === 'record') records.push(item);
  return { dir, warc, records };
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-verify-'));
  good = join(tmp, 'good');
  await makeShard({ dir: good, start: 1, end: 40 });
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('verifyPaths', () => {
  it('passes a good shard with 0 defects and counts what it read', async () => {
    const report = await verifyPaths([good]);
    expect(report.defects).toEqual([]);
    expect(report.files).toBe(1);
    expect(report.records).toBeGreaterThan(100);
    expect(report.counts.types.warcinfo).toBe(1);
    expect(report.counts.ids).toMatchObject({ archived: expect.any(Number), missing: 5, failed: 3 });
    expect(report.counts.dbRows).toBe(report.records - 1);
  });

  it('reports a flipped byte by file and offset (and the DB rows that pointed into it, and the manifest sha256)', async () => {
    const { dir, warc, records } = await copyShard('flipped');
    const victim = records[20]!;
    const data = Buffer.from(await readFile(warc));
    data[victim.offset + 30]! ^= 0x01;
    await writeFile(warc, data);
    const report = await verifyPaths([dir]);
    const atVictim = report.defects.filter((d) => d.file === warc && d.offset === victim.offset);
    expect(atVictim.length).toBeGreaterThanOrEqual(2); // the corrupt member, and the row that points at it
    expect(report.defects.some((d) => /sha256 differs/.test(d.what))).toBe(true);
  });

  it('reports a torn tail', async () => {
    const { dir, warc, records } = await copyShard('torn');
    const last = records[records.length - 1]!;
    const data = await readFile(warc);
    await writeFile(warc, data.subarray(0, last.offset + last.length - 9));
    const report = await verifyPaths([warc]);
    expect(report.defects).toEqual([{ file: warc, offset: last.offset, what: expect.stringMatching(/truncated/) }]);
    const full = await verifyPaths([dir]);
    expect(full.defects.some((d) => /size \d+, shard.json says/.test(d.what))).toBe(true);
  });

  it('reports a DB row pointing nowhere, at the wrong record, or into a missing file; and an archived ID without its response', async () => {
    const { dir, warc } = await copyShard('badrows');
    const db = new Database(join(dir, 'shard.sqlite'));
    const rows = db.prepare('SELECT rowid, offset, warc FROM captures ORDER BY rowid LIMIT 3').all() as { rowid: number; offset: number; warc: string }[];
    db.prepare('UPDATE captures SET offset = offset + 7 WHERE rowid = ?').run(rows[0]!.rowid);
    db.prepare(`UPDATE captures SET record_id = '<urn:uuid:nope>' WHERE rowid = ?`).run(rows[1]!.rowid);
    db.prepare(`UPDATE captures SET warc = 'gone.warc.gz' WHERE rowid = ?`).run(rows[2]!.rowid);
    db.prepare(`DELETE FROM captures WHERE post_id = 5`).run();
    db.close();
    const report = await verifyPaths([dir]);
    const whats = report.defects.map((d) => `${d.file.endsWith('gone.warc.gz') ? 'gone' : d.file === warc ? 'warc' : d.file}@${d.offset}: ${d.what}`);
    expect(whats).toContainEqual(`warc@${rows[0]!.offset + 7}: ${'captures row (post)'} for http://127.0.0.1:8080/api/v1/posts/1: no record starts at this offset`);
    expect(whats.some((w) => w.startsWith(`warc@${rows[1]!.offset}`) && w.includes('record ID <urn:uuid:nope>'))).toBe(true);
    expect(whats.some((w) => w.startsWith('gone@') && w.includes('does not exist'))).toBe(true);
    expect(report.defects.some((d) => d.what === 'ID 5 is archived but has no 2xx capture')).toBe(true);
    expect(report.defectCount).toBe(4);
  });

  it('reports an .open file and a path that does not exist', async () => {
    const { dir, warc } = await copyShard('open');
    const { rename } = await import('node:fs/promises');
    await rename(warc, `${warc}.open`);
    const report = await verifyPaths([dir, join(tmp, 'nope')]);
    expect(report.defects.some((d) => d.file === `${warc}.open` && /unfinished/.test(d.what))).toBe(true);
    expect(report.defects.some((d) => /listed in shard.json but missing/.test(d.what))).toBe(true);
    expect(report.defects.some((d) => d.file === join(tmp, 'nope'))).toBe(true);
  });
});
