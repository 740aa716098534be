/** Which files of a shard directory go up, and the check of each WARC against its shard.json. */
import { lstat, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError } from '../../config/errors.js';
import { checkInputFile } from '../warc/input-file.js';
import { readManifest, type ManifestOnDisk } from '../shard/shard-manifest.js';
import { flatWarcNames, readReferencedWarcs, rewriteCdxjFilenames } from '../shard/referenced-warcs.js';
import { UploadError } from './errors.js';
import { manifestPath as manifestPathOf, mergedDbPath, warcPath, warcsDir } from '../shard/layout.js';

/** A file of a shard directory to upload; `name` is relative to the directory, with `/`. */
export interface ShardFile {
  name: string;
  path: string;
  size: number;
  /** The sha256 the file must have (an index-only merge's referenced WARC, as recorded when it was merged). */
  expectSha256?: string;
}

/**
 * The files a shard uploads: finished `warcs/*.warc.gz` (never `*.open`), then `shard.json`.
 * Only regular files (a link only when it resolves to a regular file inside the directory, see
 * input-file.ts), and when `shard.json` exists only the WARCs it lists: anything else in `warcs/`
 * (a link to /etc/passwd, a FIFO, a file the manifest does not know) stops the upload with an
 * InputError naming it, before anything is sent. A merge directory has no shard.json: its
 * regular WARCs are sent, then its index, reports and merged.sqlite (MERGE_FILES).
 * An index-only merge (issue 25) has none of its own: the input WARCs its
 * merged.sqlite references are sent, as `warcs/SHARD--NAME` (referenced-warcs.ts), each checked
 * against the sha256 recorded when it was merged, then `indexes/index.cdxj` with each line naming
 * its WARC by that flat name (written beside the index as `index-flat.cdxj`): CDXJ + WARCs, what
 * a wayback collection over `warcs/` serves. The WARCs are other folders' files, so
 * `deleteAfterUpload` is refused. `shard.sqlite` is left to the caller (it must be snapshotted first, see s3.ts).
 */
export async function listShardFiles(dir: string, options: { deleteAfterUpload?: boolean } = {}): Promise<ShardFile[]> {
  const referenced = readReferencedWarcs(dir);
  if (referenced) {
    if (options.deleteAfterUpload) {
      throw new InputError(`${dir} is an index-only merge: its WARCs are the inputs' own files, so --delete-after-upload is refused (delete them from their shards yourself once uploaded)`, { code: 'E_UPLOAD_INDEX_ONLY_DELETE' });
    }
    const flat = flatWarcNames(referenced.map((w) => w.name));
    const files: ShardFile[] = [];
    for (const w of referenced) {
      const path = resolve(dir, w.name);
      const check = await checkInputFile(path);
      if (!check.ok) throw new InputError(`${path} (referenced by ${mergedDbPath(dir)}): ${check.what}; nothing uploaded`, { code: 'E_UPLOAD_NOT_REGULAR' });
      files.push({ name: `warcs/${flat.get(w.name)!}`, path, size: check.size, expectSha256: w.sha256 });
    }
    const index = join(dir, 'indexes', 'index-flat.cdxj');
    await rewriteCdxjFilenames(join(dir, 'indexes', 'index.cdxj'), index, flat);
    files.push({ name: 'indexes/index.cdxj', path: index, size: (await lstat(index)).size });
    // Then the reports and merged.sqlite, as for a full merge (MERGE_FILES after its index).
    for (const name of MERGE_FILES.slice(1)) {
      const path = join(dir, name);
      if (!(await lstat(path).catch(() => undefined))) continue;
      const check = await checkInputFile(path, dir);
      if (!check.ok) throw new InputError(`${path}: ${check.what}; nothing uploaded — remove it first`, { code: 'E_UPLOAD_NOT_REGULAR' });
      files.push({ name, path, size: check.size });
    }
    return files;
  }
  let names: string[];
  try {
    names = await readdir(warcsDir(dir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new InputError(`${dir}: not a shard directory (no warcs/ folder)`, { code: 'E_UPLOAD_NO_SHARD', cause: err });
    }
    throw err;
  }
  const manifestPath = manifestPathOf(dir);
  const manifestCheck = await checkInputFile(manifestPath, dir);
  const manifest = manifestCheck.ok ? await readManifest(dir) : undefined;
  if (!manifestCheck.ok && (await lstat(manifestPath).catch(() => undefined))) {
    throw new InputError(`${manifestPath}: ${manifestCheck.what}`, { code: 'E_UPLOAD_NOT_REGULAR' });
  }
  const listed = manifest ? new Set((manifest.warcs ?? []).map((w) => w.name)) : undefined;
  const files: ShardFile[] = [];
  for (const name of names.filter((n) => n.endsWith('.warc.gz')).sort()) {
    const path = warcPath(dir, name);
    const check = await checkInputFile(path, dir);
    if (!check.ok) throw new InputError(`${path}: ${check.what}; nothing uploaded — remove it first`, { code: 'E_UPLOAD_NOT_REGULAR' });
    if (listed && !listed.has(name)) {
      throw new InputError(`${path}: not listed in shard.json, so not uploaded; nothing uploaded — run \`lifeboat verify\` (is a crawl still running?)`, { code: 'E_UPLOAD_NOT_LISTED' });
    }
    files.push({ name: `warcs/${name}`, path, size: check.size });
  }
  if (manifestCheck.ok) files.push({ name: 'shard.json', path: manifestPath, size: manifestCheck.size });
  // A merge output: what the curator needs next to its WARCs — the CDXJ index, the coverage
  // report and lists of what is missing, and merged.sqlite (IDs, provenance, the search index),
  // last. Merge and upload take the folder's lock, so merged.sqlite is not being written now.
  if (await lstat(mergedDbPath(dir)).catch(() => undefined)) {
    for (const name of MERGE_FILES) {
      const path = join(dir, name);
      if (!(await lstat(path).catch(() => undefined))) continue;
      const check = await checkInputFile(path, dir);
      if (!check.ok) throw new InputError(`${path}: ${check.what}; nothing uploaded — remove it first`, { code: 'E_UPLOAD_NOT_REGULAR' });
      files.push({ name, path, size: check.size });
    }
  }
  return files;
}

/** The files of a merge output uploaded with its WARCs, in this order (see merge.ts for what each is). */
export const MERGE_FILES = ['indexes/index.cdxj', 'coverage.json', 'missing-ranges.txt', 'missing-media.txt', 'merged.sqlite'] as const;

/** Throws E_UPLOAD_MANIFEST_MISMATCH when the manifest lists `name` with another sha256 (or `expected`, a referenced WARC's, differs). */
export function checkAgainstManifest(manifest: ManifestOnDisk | undefined, name: string, sha256: string, expected?: string): void {
  if (expected && expected !== sha256) {
    throw new UploadError(`${name}: sha256 ${sha256} differs from ${expected} recorded by the index-only merge; the input WARC changed since it was merged — run \`lifeboat verify\` first`, {
      code: 'E_UPLOAD_MANIFEST_MISMATCH',
      file: name,
    });
  }
  const base = name.replace(/^warcs\//, '');
  const entry = manifest?.warcs?.find((w) => w.name === base || w.name === name);
  if (entry?.sha256 && entry.sha256.toLowerCase() !== sha256) {
    throw new UploadError(
      `${name}: sha256 ${sha256} differs from ${entry.sha256} in shard.json; the file is damaged or the manifest is stale — run \`lifeboat verify\` first`,
      { code: 'E_UPLOAD_MANIFEST_MISMATCH', file: name },
    );
  }
}
