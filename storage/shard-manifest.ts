import { lstat, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../config/errors.js';
import { checkInputFile } from './input-file.js';

/** `DIR/shard.json` (DESIGN.md §5, a contract). Written atomically: temp file + rename. */
export interface ShardManifest {
  format: 'lifeboat-shard-1';
  software: string;
  profile: string;
  node: string;
  ranges: string;
  counts: Record<string, number>;
  warcs: { name: string; size: number; sha256: string; records: number }[];
  updated_at: string;
}

export async function writeManifest(dir: string, manifest: ShardManifest): Promise<void> {
  const path = join(dir, 'shard.json');
  const tmp = `${path}.tmp`;
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(tmp, path);
}

/** A manifest of 100,000 WARCs is ~20 MB; a larger "shard.json" is not one. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export async function readManifest(dir: string): Promise<ShardManifest | undefined> {
  const path = join(dir, 'shard.json');
  if (!(await lstat(path).catch(() => undefined))) return undefined;
  // From a stranger: a FIFO or a link to /dev/zero would hang or fill memory (issue 11 §4).
  const check = await checkInputFile(path, dir);
  if (!check.ok) throw new InputError(`${path}: ${check.what}`, { code: 'E_MANIFEST' });
  if (check.size > MAX_MANIFEST_BYTES) throw new InputError(`${path}: ${check.size} bytes, more than a manifest can be (${MAX_MANIFEST_BYTES}); not read`, { code: 'E_MANIFEST' });
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  let manifest: ShardManifest;
  try {
    manifest = JSON.parse(text) as ShardManifest;
  } catch (err) {
    throw new InputError(`${path}: not valid JSON: ${(err as Error).message}`, { code: 'E_MANIFEST', cause: err });
  }
  // Names in a manifest come from whoever made the shard; callers join them to DIR/warcs/.
  for (const w of Array.isArray(manifest?.warcs) ? manifest.warcs : []) {
    if (!isSafeWarcName(w?.name)) {
      throw new InputError(`${path}: WARC name ${JSON.stringify(w?.name)?.slice(0, 200)} is not a plain file name (NAME.warc.gz, no "/" or "..")`, { code: 'E_MANIFEST' });
    }
  }
  return manifest;
}

/** A WARC file name that stays inside the directory it is joined to: no separators, no `..`, no NUL. */
export function isSafeWarcName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= 255 && /^[A-Za-z0-9._-]+\.warc(\.gz)?$/.test(name) && !name.includes('..');
}
