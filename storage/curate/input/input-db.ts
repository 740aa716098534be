import { constants } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { checkInputFile } from '../../warc/input-file.js';

/**
 * Input databases (a shard's `shard.sqlite`, a merge's `merged.sqlite`) are opened from a private
 * snapshot, never in place (issue 11 §4). Why a copy: a shard database is in WAL mode, and SQLite
 * opening a WAL database — even read-only — creates `-shm` (and needs a writable directory), which
 * fails on a read-only mount and changes an input; `immutable=1` would avoid that but needs URI
 * file names, which better-sqlite3 builds without, and it would ignore the `-wal` a crashed crawl
 * leaves (losing its last commits). The copy is a reflink where the file system can (btrfs, xfs),
 * and a shard database is small next to its WARCs. The snapshot is checked before use: a file
 * that is empty, not SQLite, damaged (`quick_check`) or not ours (missing tables) is a defect,
 * and the caller goes on with the WARCs alone.
 */
export type InputDb =
  | { ok: true; db: Database.Database; snapshotPath: string; close: () => Promise<void> }
  | { ok: false; what: string };

/** Tables a shard database must have to be read (the merged database has `records` instead). */
export const SHARD_TABLES = ['meta', 'ids', 'captures', 'posts', 'urls'] as const;
export const MERGED_TABLES = ['records', 'ids'] as const;

export async function openInputDb(path: string, options: { root: string; tmpDir: string; tables: readonly string[] }): Promise<InputDb> {
  const check = await checkInputFile(path, options.root);
  if (!check.ok) return check;
  if (check.size === 0) return { ok: false, what: 'an empty file (0 bytes), not a database' };
  const dir = await mkdtemp(join(options.tmpDir, '.lifeboat-input-db-'));
  const snapshotPath = join(dir, 'input.sqlite');
  const dispose = () => rm(dir, { recursive: true, force: true });
  let db: Database.Database | undefined;
  try {
    await copyFile(path, snapshotPath, constants.COPYFILE_FICLONE);
    const wal = `${path}-wal`;
    const walCheck = await checkInputFile(wal, options.root);
    if (walCheck.ok && walCheck.size > 0) await copyFile(wal, `${snapshotPath}-wal`, constants.COPYFILE_FICLONE);
    db = new Database(snapshotPath, { fileMustExist: true });
    const problems = db.pragma('quick_check', { simple: false }) as { quick_check: string }[];
    if (problems.length !== 1 || problems[0]!.quick_check !== 'ok') {
      throw new Error(`damaged: ${problems.slice(0, 3).map((p) => p.quick_check).join('; ')}`);
    }
    const tables = new Set(db.prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table'`).all().map((r) => r.name));
    const missing = options.tables.filter((t) => !tables.has(t));
    if (missing.length > 0) throw new Error(`not a lifeboat database (no table ${missing.join(', ')})`);
    const opened = db;
    return {
      ok: true,
      db: opened,
      snapshotPath,
      close: async () => {
        opened.close();
        await dispose();
      },
    };
  } catch (err) {
    db?.close();
    await dispose();
    const message = (err as Error).message;
    return { ok: false, what: /not a database|file is encrypted/i.test(message) ? `not a SQLite database (${message})` : message };
  }
}
