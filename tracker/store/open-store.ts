import pg from 'pg';
import { InputError } from '../../config/errors.js';
import type { ItemStore } from './item-store.js';
import { PostgresItemStore } from './postgres-store.js';
import { SqliteItemStore } from './sqlite-store.js';

/**
 * Opens and initialises the store named by `db`:
 * - `sqlite:PATH` — an embedded SQLite file (created if missing);
 * - `postgres://USER@HOST:PORT/DB[?schema=NAME][&synchronous_commit=off]` (or `postgresql://`) —
 *   a shared PostgreSQL database; `schema` keeps several trackers (or test runs) apart;
 *   `synchronous_commit=off` trades the last moments before a database crash for speed
 *   (see PostgresItemStore).
 * The caller owns the returned store and must `close()` it.
 */
export async function openItemStore(options: { db: string; project: string; maxConnections?: number; seenCache?: number }): Promise<ItemStore> {
  const { db, project, maxConnections, seenCache } = options;
  let store: ItemStore;
  if (db.startsWith('sqlite:')) {
    const path = db.slice('sqlite:'.length);
    if (!path) throw new InputError(`--db ${db}: give a file path after "sqlite:"`);
    store = new SqliteItemStore({ path, project, ...(seenCache !== undefined ? { seenCache } : {}) });
  } else if (/^postgres(ql)?:\/\//.test(db)) {
    const url = new URL(db);
    const schema = url.searchParams.get('schema') ?? undefined;
    const synchronousCommit = url.searchParams.get('synchronous_commit') !== 'off';
    url.searchParams.delete('schema');
    url.searchParams.delete('synchronous_commit');
    store = new PostgresItemStore({ connectionString: url.toString(), project, schema, maxConnections, synchronousCommit, ...(seenCache !== undefined ? { seenCache } : {}) });
  } else {
    throw new InputError(`--db ${db}: expected sqlite:PATH or postgres://USER@HOST:PORT/DATABASE`);
  }
  try {
    await store.init();
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  return store;
}

/** Whether a PostgreSQL server answers at `url` within 3 s (the soak and the tests ask before using one). */
export async function pgReachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}
