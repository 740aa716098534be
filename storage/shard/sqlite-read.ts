import Database from 'better-sqlite3';

/**
 * Opens an existing SQLite database (a shard's or a merge's) to read it, so that closing it
 * leaves no `-wal`/`-shm` files behind (issue 10 §3). A `readonly` connection to a WAL database
 * creates both files and, unable to write, can neither checkpoint nor delete them when it closes.
 * A read-write connection with `query_only` cannot change a row either, and when it is the last
 * one to close it checkpoints and removes them; while a crawl still has the database open, they
 * stay, as they must. Where the file cannot be opened for writing (a read-only mount, another
 * user's shard), it falls back to `readonly`.
 */
export function openForReading(path: string): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: true });
  } catch (err) {
    if (!/readonly|read-only|unable to open|permission/i.test((err as Error).message)) throw err;
    return new Database(path, { readonly: true, fileMustExist: true });
  }
  db.pragma('query_only = ON');
  db.pragma('busy_timeout = 5000');
  return db;
}
