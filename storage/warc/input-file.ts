import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { relative, isAbsolute } from 'node:path';
import { InputError } from '../../config/errors.js';

/**
 * Input files of the curator tools (`verify`, `merge`, `upload`) come from strangers, so only
 * regular files are ever read (issue 11 §4). The rule, also in the README:
 * - a regular file is read;
 * - a symbolic link inside a shard is followed only when it resolves to a regular file inside
 *   the same shard directory (after resolving every link on the way); a link out of the shard
 *   (`warcs/x.warc.gz -> /etc/passwd`) or to anything else is a defect and is not read;
 * - a FIFO, socket, device (`/dev/zero`) or directory is a defect and is never opened;
 * - a path named on the command line may be a link (you chose it), but must end at a regular file.
 * Checking first and opening later leaves a window, so readers also open with O_NONBLOCK (a FIFO
 * swapped in meanwhile does not block the open) and check the opened descriptor (`openRegular`).
 */
export type InputCheck = { ok: true; size: number } | { ok: false; what: string };

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

function inside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/**
 * Whether `path` may be read. With `root` (the shard directory) links must stay inside it;
 * without, `path` was named by the user and links are followed. Never throws for a bad file.
 */
export async function checkInputFile(path: string, root?: string): Promise<InputCheck> {
  let st: Stats;
  try {
    st = await lstat(path);
  } catch (err) {
    return { ok: false, what: `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  if (st.isFile()) return { ok: true, size: st.size };
  if (!st.isSymbolicLink()) return { ok: false, what: `${kindOf(st)}, not a regular file; not read` };
  let target: string;
  try {
    target = await realpath(path);
  } catch {
    return { ok: false, what: 'a symbolic link that leads nowhere (dangling or a loop); not read' };
  }
  if (root !== undefined) {
    const realRoot = await realpath(root).catch(() => root);
    if (!inside(realRoot, target)) return { ok: false, what: `a symbolic link to ${target}, outside the shard; not read` };
  }
  const tst = await stat(target).catch(() => undefined);
  if (!tst?.isFile()) return { ok: false, what: `a symbolic link to ${target}, ${tst ? kindOf(tst) : 'which is gone'}; not read` };
  return { ok: true, size: tst.size };
}

/**
 * Opens a file for reading without ever blocking on a FIFO and refuses anything but a regular
 * file (checked on the opened descriptor, so nothing can be swapped in after the check).
 */
export async function openRegular(path: string): Promise<FileHandle> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const st = await fh.stat().catch(async (err: unknown) => {
    await fh.close();
    throw err;
  });
  if (!st.isFile()) {
    await fh.close();
    throw new InputError(`${path}: ${kindOf(st)}, not a regular file; not read`, { code: 'E_NOT_REGULAR_FILE' });
  }
  return fh;
}

/** sha256 (hex) and size of a regular file, read through `openRegular`. */
export async function hashRegularFile(path: string): Promise<{ sha256: string; size: number }> {
  const fh = await openRegular(path);
  try {
    const h = createHash('sha256');
    let size = 0;
    for await (const chunk of fh.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false })) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { sha256: h.digest('hex'), size };
  } finally {
    await fh.close();
  }
}
