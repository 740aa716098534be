import { open } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

/**
 * The merge's provenance in its WARCs (issue 15 §4):
 * - each merged WARC starts with a warcinfo naming the software with its version and every input
 *   WARC this run merges (`input-N: SHARD/warcs/NAME sha256:HEX (shard, node N)`), so a reader of a
 *   merged file alone can tell where its records came from and check the inputs' hashes;
 * - an input's own warcinfo records are copied after it (they hold the crawl's operator, robots
 *   policy, profile) but marked `WARC-Lifeboat-Copied-From: INPUT-FILE`: their `WARC-Filename`
 *   names that input file, not the merged file holding the copy. Adding a header field leaves the
 *   record's block (and its digest) untouched.
 */
export interface WarcinfoInput {
  path: string;
  kind: 'shard' | 'warc';
  node?: string;
  warcs: { path: string; name: string; sha256: string }[];
}

/** How an input WARC is named in the merge's records: `SHARD/warcs/NAME` or the bare file name. */
export function inputWarcLabel(path: string): string {
  const dir = dirname(path);
  return basename(dir) === 'warcs' ? `${basename(dirname(dir))}/warcs/${basename(path)}` : basename(path);
}

export function mergeWarcinfo(o: { software: string; inputs: WarcinfoInput[]; alreadyMerged: (sha256: string) => boolean }): Record<string, string> {
  const fields: Record<string, string> = {
    software: o.software,
    operation: 'merge',
    description: 'lifeboat merge: one copy of each (URL, payload) from the inputs listed below; their own warcinfo records follow, marked WARC-Lifeboat-Copied-From',
  };
  let n = 0;
  for (const input of o.inputs) {
    const what = input.kind === 'shard' ? `shard${input.node ? `, node ${input.node}` : ''}` : 'WARC file';
    for (const w of input.warcs) {
      if (o.alreadyMerged(w.sha256)) continue;
      fields[`input-${++n}`] = `${inputWarcLabel(w.path)} sha256:${w.sha256} (${what})`;
    }
  }
  fields['input-count'] = String(n);
  return fields;
}

const MARK_MAX_BYTES = 16 * 1024 * 1024;

/**
 * A copied warcinfo record (one gzip member) with `WARC-Lifeboat-Copied-From` added to its header.
 * A member that is not a single WARC record, or a very large one, is returned as it was.
 */
export async function markCopiedWarcinfo(data: Buffer | { path: string; offset: number; length: number }, from: string): Promise<Buffer | { path: string; offset: number; length: number }> {
  let member: Buffer;
  if (Buffer.isBuffer(data)) member = data;
  else {
    if (data.length > MARK_MAX_BYTES) return data;
    const fh = await open(data.path, 'r');
    try {
      member = Buffer.alloc(data.length);
      await fh.read(member, 0, data.length, data.offset);
    } finally {
      await fh.close();
    }
  }
  let raw: Buffer;
  try {
    raw = gunzipSync(member, { maxOutputLength: MARK_MAX_BYTES });
  } catch {
    return data;
  }
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0 || /\r\nWARC-Lifeboat-Copied-From:/i.test(raw.subarray(0, end).toString('latin1'))) return data;
  const line = Buffer.from(`\r\nWARC-Lifeboat-Copied-From: ${from.replace(/[\r\n]/g, ' ')}`, 'utf8');
  return gzipSync(Buffer.concat([raw.subarray(0, end), line, raw.subarray(end)]));
}
