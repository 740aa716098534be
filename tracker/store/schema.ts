/**
 * The tracker's schema, once, for both databases: every table's columns with the SQLite and the
 * PostgreSQL type side by side, the indexes (the same text in both dialects), and the DDL each
 * store runs. A column added after the first release carries the schema version it came with:
 * an older database gets it by `ALTER TABLE … ADD COLUMN` when a store opens it. A test checks that
 * both live databases end up with exactly these columns (test/tracker-store-parity.test.ts).
 */

/**
 * 2: items have a kind and a priority; media_urls (issue 13). 3: per-URL attempts and failures,
 * an item's last progress and media count, nodes' refusals and media quota window (issue 21).
 * 4: recheck items (kind `recheck`, issue 21 §1): `not_before` (no claim earlier) and `rechecks` (its attempt).
 * 5: `stalled_by` and `stalled_at`: the node a lease was last taken from for no progress, and when (issue 21 §3).
 * 6: `follow_accepted` (issue 21 §1): when a follow's poll accepted each range of new IDs (a
 * `missing` ID younger than `follow.recheck.age_secs` is asked again). A table a database lacks is
 * made by `CREATE TABLE IF NOT EXISTS` when a store opens it.
 */
export const SCHEMA_VERSION = 6;

export type Dialect = 'sqlite' | 'postgres';

/** A column's logical type; `serial` is the table's generated integer key. */
type ColumnType = 'serial' | 'int' | 'smallint' | 'bigint' | 'text' | 'bytes';

const TYPES: Record<ColumnType, Record<Dialect, string>> = {
  serial: { sqlite: 'INTEGER PRIMARY KEY', postgres: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY' },
  int: { sqlite: 'INTEGER', postgres: 'INTEGER' },
  smallint: { sqlite: 'INTEGER', postgres: 'SMALLINT' },
  bigint: { sqlite: 'INTEGER', postgres: 'BIGINT' },
  text: { sqlite: 'TEXT', postgres: 'TEXT' },
  bytes: { sqlite: 'BLOB', postgres: 'BYTEA' },
};

export interface Column {
  name: string;
  type: ColumnType;
  /** Constraints and default, the same text in both dialects (`NOT NULL DEFAULT 0`). */
  extra?: string;
  /** The schema version that added the column (absent: there from the start). */
  since?: number;
}

export interface Table {
  name: string;
  columns: Column[];
  /** Table constraints (`PRIMARY KEY (project, key)`). */
  constraints?: string[];
}

const col = (name: string, type: ColumnType, extra?: string, since?: number): Column => ({ name, type, ...(extra ? { extra } : {}), ...(since ? { since } : {}) });

export const TABLES: readonly Table[] = [
  { name: 'meta', columns: [col('key', 'text', 'PRIMARY KEY'), col('value', 'text', 'NOT NULL')] },
  {
    name: 'items',
    columns: [
      col('id', 'serial'),
      col('project', 'text', 'NOT NULL'),
      col('ranges', 'text', 'NOT NULL'),
      col('id_count', 'bigint', 'NOT NULL'),
      col('finished', 'text', "NOT NULL DEFAULT '[]'"),
      col('finished_count', 'bigint', 'NOT NULL DEFAULT 0'),
      col('state', 'text', "NOT NULL DEFAULT 'queued'"),
      col('lease_id', 'text'),
      col('node_id', 'bigint'),
      col('lease_expires_at', 'bigint'),
      col('attempts', 'int', 'NOT NULL DEFAULT 0'),
      col('last_error', 'text'),
      col('done_at', 'bigint'),
      col('done_stats', 'text'),
      col('kind', 'text', "NOT NULL DEFAULT 'posts'", 2),
      col('priority', 'int', 'NOT NULL DEFAULT 0', 2),
      /** When the holder last reported progress (finished IDs or seqs, media); set by a claim. */
      col('progress_at', 'bigint', undefined, 3),
      /** Never-seen media URLs reported under this item (the `media.max_per_post` budget). */
      col('media_reported', 'bigint', 'NOT NULL DEFAULT 0', 3),
      /** Times a holder gave the item back with `fail`: such items go behind the rest of their kind. */
      col('failures', 'int', 'NOT NULL DEFAULT 0', 3),
      /** A recheck item's earliest claim (issue 21 §1: IDs that answered missing near the live edge). */
      col('not_before', 'bigint', undefined, 4),
      /** How many rechecks a recheck item's IDs have had. */
      col('rechecks', 'int', 'NOT NULL DEFAULT 0', 4),
      /**
       * The node whose lease the expire pass last took for no progress (`nodes.stall_secs`), and
       * when: a claim of that node skips the item (rules.ts `STALL_BAR`). Replaced by the next
       * staller's; a lease that ran out, a release or a fail leaves it as it is.
       */
      col('stalled_by', 'bigint', undefined, 5),
      col('stalled_at', 'bigint', undefined, 5),
    ],
  },
  {
    name: 'nodes',
    columns: [
      col('id', 'serial'),
      col('project', 'text', 'NOT NULL'),
      col('nick', 'text', 'NOT NULL'),
      col('token_hash', 'text', 'NOT NULL UNIQUE'),
      col('created_at', 'bigint', 'NOT NULL'),
      col('items_done', 'bigint', 'NOT NULL DEFAULT 0'),
      col('ids_done', 'bigint', 'NOT NULL DEFAULT 0'),
      col('bytes_done', 'bigint', 'NOT NULL DEFAULT 0'),
      col('last_seen_at', 'bigint'),
      /** What the tracker refused this node (issue 21 §3): media URLs over a budget, claims over the lease cap, leases taken for no progress. */
      col('refused_media', 'bigint', 'NOT NULL DEFAULT 0', 3),
      col('refused_claims', 'bigint', 'NOT NULL DEFAULT 0', 3),
      col('stalled_leases', 'bigint', 'NOT NULL DEFAULT 0', 3),
      /** The node's media quota window: its start (ms) and the never-seen URLs taken in it. */
      col('media_window_at', 'bigint', 'NOT NULL DEFAULT 0', 3),
      col('media_window_count', 'bigint', 'NOT NULL DEFAULT 0', 3),
    ],
  },
  {
    name: 'bans',
    columns: [col('project', 'text', 'NOT NULL'), col('nick', 'text', 'NOT NULL'), col('reason', 'text', 'NOT NULL'), col('created_at', 'bigint', 'NOT NULL')],
    constraints: ['PRIMARY KEY (project, nick)'],
  },
  {
    name: 'events',
    columns: [col('project', 'text', 'NOT NULL'), col('at', 'bigint', 'NOT NULL'), col('node_id', 'bigint', 'NOT NULL'), col('ids', 'bigint', 'NOT NULL'), col('bytes', 'bigint', 'NOT NULL')],
  },
  {
    name: 'settings',
    columns: [col('project', 'text', 'NOT NULL'), col('key', 'text', 'NOT NULL'), col('value', 'text', 'NOT NULL')],
    constraints: ['PRIMARY KEY (project, key)'],
  },
  {
    name: 'rate_history',
    columns: [col('project', 'text', 'NOT NULL'), col('bucket', 'bigint', 'NOT NULL'), col('ids', 'bigint', 'NOT NULL'), col('bytes', 'bigint', 'NOT NULL')],
    constraints: ['PRIMARY KEY (project, bucket)'],
  },
  {
    name: 'media_urls',
    columns: [
      col('seq', 'serial'),
      col('project', 'text', 'NOT NULL'),
      col('url_hash', 'bytes', 'NOT NULL UNIQUE'),
      col('url', 'text', 'NOT NULL'),
      col('priority', 'smallint', 'NOT NULL'),
      col('item_id', 'bigint'),
      /** Media items holding the URL that were put back unfinished (failed or expired), project-wide. */
      col('attempts', 'int', 'NOT NULL DEFAULT 0', 3),
      col('last_error', 'text', undefined, 3),
      /** Set when the URL was given up on after `media.max_attempts` (its reason is last_error). */
      col('failed_at', 'bigint', undefined, 3),
    ],
  },
  {
    /** One row per range of new IDs a follow's poll accepted, and when (the IDs' age); rows too old to matter are deleted as new ones come. */
    name: 'follow_accepted',
    columns: [col('project', 'text', 'NOT NULL'), col('first_id', 'bigint', 'NOT NULL'), col('last_id', 'bigint', 'NOT NULL'), col('accepted_at', 'bigint', 'NOT NULL')],
  },
];

/** Indexes, created once every column exists (partial indexes read the same in both dialects). */
export const INDEXES: readonly string[] = [
  'CREATE INDEX IF NOT EXISTS items_queue ON items (project, state, id)',
  'CREATE UNIQUE INDEX IF NOT EXISTS items_lease ON items (lease_id) WHERE lease_id IS NOT NULL',
  "CREATE INDEX IF NOT EXISTS items_expiry ON items (project, lease_expires_at) WHERE state = 'claimed'",
  'CREATE INDEX IF NOT EXISTS items_claim ON items (project, state, priority, id)',
  'CREATE INDEX IF NOT EXISTS items_turn ON items (project, state, priority, failures, id)',
  'CREATE INDEX IF NOT EXISTS items_node ON items (node_id) WHERE node_id IS NOT NULL',
  'CREATE INDEX IF NOT EXISTS nodes_nick ON nodes (project, nick)',
  'CREATE INDEX IF NOT EXISTS events_at ON events (project, at)',
  'CREATE INDEX IF NOT EXISTS media_urls_pending ON media_urls (project, priority, seq) WHERE item_id IS NULL',
  'CREATE INDEX IF NOT EXISTS follow_accepted_at ON follow_accepted (project, accepted_at)',
];

function columnSql(c: Column, dialect: Dialect): string {
  return [c.name, TYPES[c.type][dialect], c.extra].filter(Boolean).join(' ');
}

/** `CREATE TABLE IF NOT EXISTS` for every table, as one script. */
export function createTablesSql(dialect: Dialect): string {
  return TABLES.map((t) => {
    const parts = [...t.columns.map((c) => columnSql(c, dialect)), ...(t.constraints ?? [])];
    return `CREATE TABLE IF NOT EXISTS ${t.name} (\n  ${parts.join(',\n  ')}\n);`;
  }).join('\n');
}

/**
 * The `ALTER TABLE … ADD COLUMN` statements an existing database needs: the columns of TABLES
 * that `existing(table)` (the live table's column names) lacks.
 */
export function addMissingColumnsSql(dialect: Dialect, existing: (table: string) => ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const t of TABLES) {
    const have = existing(t.name);
    for (const c of t.columns) if (!have.has(c.name)) out.push(`ALTER TABLE ${t.name} ADD COLUMN ${columnSql(c, dialect)}`);
  }
  return out;
}

/** The columns each table must have, by table name (the parity test compares the live databases to it). */
export function expectedColumns(): Record<string, string[]> {
  return Object.fromEntries(TABLES.map((t) => [t.name, t.columns.map((c) => c.name)]));
}
