import { InputError } from '../../config/errors.js';
import { nodeItemDirs } from '../../storage/shard/shard-dir.js';
import type { CliIo } from './cli-io.js';

/**
 * A volunteer node's `--out` folder stands for all its items (`DIR/items/*`): `verify`, `merge`
 * and `upload` get the item shards in its place (one line on stderr says so). A node folder with
 * no item yet is refused with what to do.
 */
export async function expandNodeFolders(paths: string[], io: CliIo): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const items = await nodeItemDirs(p);
    if (items === undefined) {
      out.push(p);
      continue;
    }
    if (items.length === 0) throw new InputError(`${p} is a volunteer node's folder with no item shards yet: run the node first (lifeboat node --out ${p} …)`, { code: 'E_NODE_EMPTY' });
    io.stderr.write(`${p}: a node's folder; taking its ${items.length} item shard${items.length === 1 ? '' : 's'} (${p}/items/*)\n`);
    out.push(...items);
  }
  return out;
}
