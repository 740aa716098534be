import { lstat, readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { InputError } from '../../config/errors.js';
import { checkInputFile } from '../warc/input-file.js';
import { manifestPath } from './layout.js';

/** `DIR/shard.json` (a contract: README "What a shard holds"). Written atomically: temp file + rename. */
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
  const path = manifestPath(dir);
  const tmp = `${path}.tmp`;
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(tmp, path);
}

/** A manifest of 100,000 WARCs is ~20 MB; a larger "shard.json" is not one. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/**
 * A `shard.json` as read back: it may come from another version or another tool, so every field
 * is optional, but a field that is there has its type (checked, not assumed).
 */
const ManifestOnDiskSchema = z.looseObject({
  format: z.string().optional(),
  software: z.string().optional(),
  profile: z.string().optional(),
  node: z.string().optional(),
  ranges: z.union([z.string(), z.array(z.string())]).optional(),
  counts: z.record(z.string(), z.number()).optional(),
  warcs: z.array(z.looseObject({ name: z.string(), size: z.number().optional(), sha256: z.string().optional(), records: z.number().optional() })).optional(),
  updated_at: z.string().optional(),
});
export type ManifestOnDisk = z.infer<typeof ManifestOnDiskSchema>;

/**
 * Reads `DIR/shard.json` (the one reader: crawl, node, merge, verify, status, export, upload);
 * `undefined` when there is none. Anything else wrong with it is an InputError naming the file:
 * not a regular file (a FIFO or a link to /dev/zero would hang or fill memory, issue 11 §4), too
 * big, not JSON, a field of the wrong type, or a WARC name that is not a plain file name.
 */
export async function readManifest(dir: string): Promise<ManifestOnDisk | undefined> {
  const path = manifestPath(dir);
  if (!(await lstat(path).catch(() => undefined))) return undefined;
  const check = await checkInputFile(path, dir);
  if (!check.ok) throw new InputError(`${path}: ${check.what}`, { code: 'E_MANIFEST' });
  if (check.size > MAX_MANIFEST_BYTES) throw new InputError(`${path}: ${check.size} bytes, more than a manifest can be (${MAX_MANIFEST_BYTES}); not read`, { code: 'E_MANIFEST' });
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${path}: not valid JSON: ${(err as Error).message}`, { code: 'E_MANIFEST', cause: err });
  }
  // Names in a manifest come from whoever made the shard; callers join them to DIR/warcs/.
  const warcs = (json as { warcs?: unknown } | null)?.warcs;
  for (const w of Array.isArray(warcs) ? (warcs as { name?: unknown }[]) : []) {
    if (!isSafeWarcName(w?.name)) {
      throw new InputError(`${path}: WARC name ${JSON.stringify(w?.name)?.slice(0, 200)} is not a plain file name (NAME.warc.gz, no "/" or "..")`, { code: 'E_MANIFEST' });
    }
  }
  const parsed = ManifestOnDiskSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError(`${path}: not a shard manifest: ${issue.path.join('.') || '(top level)'}: ${issue.message}`, { code: 'E_MANIFEST' });
  }
  return parsed.data;
}

/** A WARC file name that stays inside the directory it is joined to: no separators, no `..`, no NUL. */
export function isSafeWarcName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= 255 && /^[A-Za-z0-9._-]+\.warc(\.gz)?$/.test(name) && !name.includes('..');
}
