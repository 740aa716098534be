import { createHash } from 'node:crypto';
import { access, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { InputError } from '../../../config/errors.js';
import { checkInputFile } from '../../warc/input-file.js';
import { readManifest } from '../../shard/shard-manifest.js';
import { warcsDir } from '../../shard/layout.js';
import type { ScanEvent } from './scan-files.js';
import type { ScanPool } from './scan-pool.js';

/**
 * The inputs of `lifeboat merge` (merge.ts): the shard directories and bare WARC files named on
 * the command line, their WARCs listed and checked (regular files only), then hashed on the scan
 * pool and compared with each shard's shard.json. What merge.ts then reads, skips as already
 * merged, or reports as a defect starts from these listings.
 */
const WARC_NAME = /\.warc(\.gz)?(\.open)?$/;

export interface InputWarc {
  path: string;
  name: string;
  size: number;
  sha256: string;
  /** Size and sha256 match the shard's shard.json (an index-only merge then believes the records' declared sha1 digests). */
  matchesManifest: boolean;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export interface InputListing {
  kind: 'shard' | 'warc';
  warcs: InputWarc[];
  /** Files of the shard that are not read or not as shard.json says (issue 11 §4); reported once the input is merged. */
  problems: { file: string; what: string }[];
  archivedListed?: number;
  profile?: string;
  node?: string;
  software?: string;
}

/**
 * An input's WARCs. Only regular files are read (input-file.ts). Each WARC is hashed (on the
 * pool's workers) and compared with shard.json: a file changed since the manifest was written
 * (or not listed in it) is a defect, and is still merged by its records — each record is checked
 * against its own digests, so the good ones are kept, as for any damaged input.
 */
export type Listing = InputListing & {
  path: string;
  /** The files still to hash (then `warcs` and `problems` are filled in, by `hashInput`). */
  pending?: { entries: Entry[]; hasManifest: boolean };
};
type Entry = { file: string; name: string; what?: string; manifest?: { size?: number; sha256?: string } | null; hash?: AsyncIterable<ScanEvent> };

/**
 * The inputs and their files, checked but not yet hashed. A full merge hashes every file first
 * (its WARCs' warcinfo names them all); an index-only merge hashes each input just before
 * reading it (the next input's while this one is read), so at scale a file's second read comes
 * from the page cache rather than the disk.
 */
export async function listInputs(paths: string[]): Promise<Listing[]> {
  const pending: { listing: Listing; entries: Entry[]; hasManifest: boolean }[] = [];
  for (const p of paths) {
    let st;
    try {
      st = await stat(p);
    } catch {
      throw new InputError(`merge input ${p} does not exist`, { code: 'E_MERGE_INPUT' });
    }
    if (!st.isDirectory()) {
      const check = await checkInputFile(p);
      if (!check.ok) throw new InputError(`merge input ${p}: ${check.what}`, { code: 'E_MERGE_INPUT' });
      pending.push({ listing: { path: resolve(p), kind: 'warc', warcs: [], problems: [] }, entries: [{ file: p, name: basename(p) }], hasManifest: false });
      continue;
    }
    const manifest = await readManifest(p);
    const listed = new Map((manifest?.warcs ?? []).map((w) => [w.name, w]));
    const dir = warcsDir(p);
    if (!(await exists(dir))) throw new InputError(`merge input ${p} is neither a WARC file nor a shard directory (no warcs/)`, { code: 'E_MERGE_INPUT' });
    const entries: Entry[] = [];
    for (const name of (await readdir(dir)).filter((n) => WARC_NAME.test(n)).sort()) {
      const file = join(dir, name);
      const check = await checkInputFile(file, p);
      if (!check.ok) entries.push({ file, name, what: check.what });
      else entries.push({ file, name, manifest: listed.get(name) ?? null });
    }
    const archived = manifest?.counts?.archived;
    pending.push({
      listing: { path: resolve(p), kind: 'shard', warcs: [], problems: [], archivedListed: typeof archived === 'number' ? archived : undefined, profile: manifest?.profile, node: manifest?.node, software: manifest?.software },
      entries,
      hasManifest: !!manifest,
    });
  }
  return pending.map((p) => ({ ...p.listing, pending: { entries: p.entries, hasManifest: p.hasManifest } }));
}

/** Starts hashing an input's files on the pool (once). */
export function submitHashes(listing: Listing, pool: ScanPool): void {
  for (const e of listing.pending?.entries ?? []) if (e.what === undefined && !e.hash) e.hash = pool.submit({ kind: 'hash', path: e.file });
}

/** Takes an input's hashes in file order: fills `warcs` (with sha256, size, whether shard.json agrees) and `problems`. */
export async function hashInput(listing: Listing, pool: ScanPool): Promise<void> {
  const pending = listing.pending;
  if (!pending) return;
  submitHashes(listing, pool);
  listing.pending = undefined;
  for (const e of pending.entries) {
    if (e.what !== undefined) {
      listing.problems.push({ file: e.file, what: e.what });
      continue;
    }
    let hashed: { sha256: string; size: number } | undefined;
    for await (const ev of e.hash!) {
      if (ev.k === 'hashed') hashed = ev;
      else if (ev.k === 'unreadable') throw new InputError(`merge input ${e.file}: cannot be read: ${ev.message}`, { code: 'E_MERGE_INPUT' });
    }
    const { sha256, size } = hashed!;
    let matchesManifest = false;
    if (pending.hasManifest && !e.name.endsWith('.open')) {
      const entry = e.manifest;
      if (!entry) listing.problems.push({ file: e.file, what: 'not listed in shard.json; merged by its records' });
      else if (entry.size !== size || entry.sha256 !== sha256) {
        const how = entry.size !== size ? `size ${size}, shard.json says ${entry.size}` : 'sha256 differs from shard.json';
        listing.problems.push({ file: e.file, what: `changed since shard.json was written (${how}); merged by its records, each checked on its own digests` });
      } else matchesManifest = true;
    }
    listing.warcs.push({ path: e.file, name: e.name, size, sha256, matchesManifest });
  }
}

/** An input's identity for incremental merges: the sha256 of its WARCs' sha256s, sorted. */
export function inputDigest(input: Listing): string {
  return createHash('sha256').update(input.warcs.map((w) => w.sha256).sort().join('\n')).digest('hex');
}
