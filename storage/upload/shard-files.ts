/** Which files of a shard directory go up, and the check of each WARC against its shard.json. */
import { lstat, readdir } from 'node:fs/promises';
import { InputError } from '../../config/errors.js';
import { checkInputFile } from '../warc/input-file.js';
import { readManifest, type ManifestOnDisk } from '../shard/shard-manifest.js';
import { UploadError } from './errors.js';
import { manifestPath as manifestPathOf, mergedDbPath, warcPath, warcsDir } from '../shard/layout.js';
import { join } from 'node:path';

/** A file of a shard directory to upload; `name` is relative to the directory, with `/`. */
export interface ShardFile {
  name: string;
  path: string;
  size: number;
}

/**
 * The files a shard uploads: finished `warcs/*.warc.gz` (never `*.open`), then `shard.json`.
 * Only regular files (a link only when it resolves to a regular file inside the directory, see
 * input-file.ts), and when `shard.json` exists only the WARCs it lists: anything else in `warcs/`
 * (a link to /etc/passwd, a FIFO, a file the manifest does not know) stops the upload with an
 * InputError naming it, before anything is sent. A merge directory has no shard.json: its
 * regular WARCs are sent, then its index, reports and merged.sqlite (MERGE_FILES). `shard.sqlite` is left to the caller (it must be snapshotted first, see s3.ts).
 */
export async function listShardFiles(dir: string): Promise<ShardFile[]> {
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

/** Throws E_UPLOAD_MANIFEST_MISMATCH when the manifest lists `name` with another sha256. */
export function checkAgainstManifest(manifest: ManifestOnDisk | undefined, name: string, sha256: string): void {
  const base = name.replace(/^warcs\//, '');
  const entry = manifest?.warcs?.find((w) => w.name === base || w.name === name);
  if (entry?.sha256 && entry.sha256.toLowerCase() !== sha256) {
    throw new UploadError(
      `${name}: sha256 ${sha256} differs from ${entry.sha256} in shard.json; the file is damaged or the manifest is stale — run \`lifeboat verify\` first`,
      { code: 'E_UPLOAD_MANIFEST_MISMATCH', file: name },
    );
  }
}
