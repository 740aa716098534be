import { once } from 'node:events';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { posix } from 'node:path';
import { createInterface } from 'node:readline';
import { InputError } from '../../config/errors.js';
import { mergedDbPath } from './layout.js';
import { openForReading } from './sqlite-read.js';

/**
 * The input WARCs an index-only merge points into (`lifeboat merge --index-only`, issue 25):
 * merged.sqlite's `warcs` rows in state `referenced`, named by paths relative to the merge folder
 * (what the CDXJ `filename` field holds). `export --wacz` and `upload` take these files; they
 * need flat names there (`archive/NAME`, `warcs/NAME`), given by `flatWarcNames`.
 */
export interface ReferencedWarc {
  /** Relative to the merge folder, with `/`. */
  name: string;
  size: number;
  sha256: string;
}

/** The referenced WARCs of `dir` sorted by name; undefined when `dir` is not an index-only merge output. */
export function readReferencedWarcs(dir: string): ReferencedWarc[] | undefined {
  const path = mergedDbPath(dir);
  if (!existsSync(path)) return undefined;
  const db = openForReading(path);
  try {
    const tables = new Set(db.prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table'`).all().map((r) => r.name));
    if (!tables.has('meta') || !tables.has('warcs')) return undefined;
    if (db.prepare<[], { value: string }>(`SELECT value FROM meta WHERE key = 'mode'`).get()?.value !== 'index-only') return undefined;
    return db.prepare<[], ReferencedWarc>(`SELECT name, size, sha256 FROM warcs WHERE state = 'referenced' ORDER BY name`).all();
  } finally {
    db.close();
  }
}

/**
 * A flat, unique file name per referenced WARC: `SHARD--NAME` for `…/SHARD/warcs/NAME`, else the
 * file's own name; a name met twice gets `-2`, `-3` … before its extension. Deterministic for a
 * given (sorted) list, so a WACZ and an upload of the same merge name the files alike.
 */
export function flatWarcNames(names: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  for (const name of names) {
    const parts = name.split('/');
    const file = parts[parts.length - 1]!;
    const shard = parts.length >= 3 && parts[parts.length - 2] === 'warcs' ? parts[parts.length - 3] : undefined;
    const base = shard && shard !== '..' && shard !== '.' ? `${shard}--${file}` : file;
    let flat = base;
    for (let n = 2; used.has(flat); n++) {
      const m = /^(.*?)(\.warc(?:\.gz)?)?$/.exec(base)!;
      flat = `${m[1]}-${n}${m[2] ?? ''}`;
    }
    used.add(flat);
    out.set(name, posix.basename(flat));
  }
  return out;
}

/** Copies a CDXJ file, each line's `filename` replaced by its flat name (the WARC's name in a WACZ or an upload). */
export async function rewriteCdxjFilenames(from: string, to: string, flat: Map<string, string>): Promise<void> {
  const out = createWriteStream(to);
  const lines = createInterface({ input: createReadStream(from), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    const a = line.indexOf(' ');
    const b = line.indexOf(' ', a + 1);
    const fields = JSON.parse(line.slice(b + 1)) as Record<string, string>;
    const name = fields.filename && flat.get(fields.filename);
    if (!name) throw new InputError(`${from}: a line names ${fields.filename ?? 'no file'}, which merged.sqlite does not reference`, { code: 'E_INDEX_REFERENCE' });
    fields.filename = name;
    if (!out.write(`${line.slice(0, b)} ${JSON.stringify(fields)}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}
