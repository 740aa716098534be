import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { GzipMemberError, scanMembers } from './gzip-members.js';
import { syncDir, type ClosedWarc } from './warc-writer.js';

export interface RepairReport extends ClosedWarc {
  /** Bytes cut from a torn tail. */
  cutBytes: number;
  /** The offset of the bad member, when there was one. */
  badOffset?: number;
  removed: boolean;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Crash repair (ARCHITECTURE.md "WARC files"): every `NAME.warc.gz.open` left by a crash is cut back to its
 * last complete gzip member and renamed to `NAME.warc.gz`. A file with no complete record after
 * its warcinfo is removed.
 */
export async function repairOpenWarcs(dir: string): Promise<RepairReport[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const reports: RepairReport[] = [];
  for (const name of names.filter((n) => n.endsWith('.warc.gz.open')).sort()) {
    const path = join(dir, name);
    let good = 0;
    let records = 0;
    let badOffset: number | undefined;
    try {
      for await (const m of scanMembers(path)) {
        good = m.offset + m.length;
        records++;
      }
    } catch (err) {
      if (!(err instanceof GzipMemberError)) throw err;
      badOffset = err.offset;
    }
    const fh = await open(path, 'r+');
    const { size } = await fh.stat();
    await fh.truncate(good);
    await fh.sync();
    await fh.close();
    const finalName = name.slice(0, -'.open'.length);
    if (records <= 1) {
      await unlink(path);
      reports.push({ name: finalName, size: 0, sha256: '', records: 0, cutBytes: size, badOffset, removed: true });
      continue;
    }
    await rename(path, join(dir, finalName));
    await syncDir(dir);
    reports.push({ name: finalName, size: good, sha256: await sha256File(join(dir, finalName)), records, cutBytes: size - good, badOffset, removed: false });
  }
  return reports;
}

/** Size, sha256 and record count of a closed WARC (for files the shard DB lost track of). */
export async function describeWarc(path: string, name: string): Promise<ClosedWarc> {
  let records = 0;
  let size = 0;
  for await (const m of scanMembers(path)) {
    records++;
    size = m.offset + m.length;
  }
  return { name, size, sha256: await sha256File(path), records };
}
