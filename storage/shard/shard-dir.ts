import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../../config/errors.js';
import { LOCK_FILE } from './dir-lock.js';
import { MERGED_DB, SHARD_DB, SHARD_MANIFEST, WARCS_DIR } from './layout.js';

/**
 * `crawl --out DIR` writes a shard: DIR must be new, empty, or a shard already (a resumed crawl).
 * A merge output (its WARCs would go into `export` unindexed, and `verify` would not see them),
 * a node's folder (its shards are DIR/items/*) or a folder of other files is refused before a
 * byte is written — as `merge --out` refuses a shard.
 */
export async function checkShardOut(out: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    // --out itself a file; a file further up the path is left to mkdir's own message.
    if (code === 'ENOTDIR' && (await stat(out).then((st) => !st.isDirectory(), () => false))) throw new InputError(`--out ${out} is a file, not a folder`, { code: 'E_OUT_DIR' });
    if (code === 'ENOTDIR') return;
    throw err;
  }
  // Before the shard test: an uploaded merge output holds a shard.sqlite too (the upload ledger).
  if (entries.includes(MERGED_DB)) {
    throw new InputError(`--out ${out} is a merge output, not a shard: crawl into a new folder, then merge it into ${out}`, { code: 'E_OUT_DIR' });
  }
  if (entries.includes(SHARD_DB) || entries.includes(SHARD_MANIFEST)) return;
  if (entries.includes('node.json')) {
    throw new InputError(`--out ${out} is a volunteer node's folder (its shards are ${out}/items/*): crawl into a new folder`, { code: 'E_OUT_DIR' });
  }
  // What a crawl killed before its database existed leaves behind: its lock, warcs/ and tmp/.
  const others = entries.filter((name) => name !== LOCK_FILE && name !== WARCS_DIR && name !== 'tmp');
  if (others.length > 0) {
    throw new InputError(`--out ${out} is not empty and not a shard (it holds ${others.slice(0, 3).join(', ')}${others.length > 3 ? ', …' : ''}): give a new or empty folder`, {
      code: 'E_OUT_DIR',
    });
  }
}

/**
 * A volunteer node's `--out` folder (`node.json`, its shards in `items/*`): the item shard
 * directories, in item order; undefined when `dir` is not a node folder (a shard, a merge output,
 * anything else). `status`, `verify`, `merge` and `upload` take a node folder as all its items.
 */
export async function nodeItemDirs(dir: string): Promise<string[] | undefined> {
  const entries = await readdir(dir).catch(() => undefined);
  if (!entries || entries.includes(SHARD_DB) || entries.includes(MERGED_DB)) return undefined;
  if (!entries.includes('node.json') && !entries.includes('items')) return undefined;
  const items = await readdir(join(dir, 'items'), { withFileTypes: true }).catch(() => undefined);
  if (!items) return entries.includes('node.json') ? [] : undefined;
  const dirs: { id: string; path: string }[] = [];
  for (const e of items) {
    if (!e.isDirectory()) continue;
    const path = join(dir, 'items', e.name);
    if (existsSync(join(path, SHARD_DB))) dirs.push({ id: e.name, path });
  }
  if (dirs.length === 0 && !entries.includes('node.json')) return undefined;
  return dirs.sort((a, b) => Number(a.id) - Number(b.id) || a.id.localeCompare(b.id)).map((d) => d.path);
}

/** The node folder `dir` is an item of (`NODE/items/ITEM`, with `NODE/node.json`), if it is one. */
export function nodeFolderOf(dir: string): string | undefined {
  const parent = dirname(dir);
  if (basename(parent) !== 'items') return undefined;
  const node = dirname(parent);
  return existsSync(join(node, 'node.json')) ? node : undefined;
}
