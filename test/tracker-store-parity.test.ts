import { expect, it } from 'vitest';
import { StorageError } from '../config/errors.js';
import { RangeSet } from '../config/id-ranges.js';
import { packItems } from '../tracker/store/item-store.js';
import { SCHEMA_VERSION, TABLES, expectedColumns } from '../tracker/store/schema.js';
import { describeEachStore } from './fixtures/store-harness.js';

/**
 * Issue 24 §2: one schema, one set of rules, one error shape for both stores. The live databases
 * hold exactly the columns of schema.ts; a claim is one transaction on both (a failure part-way
 * leaves nothing of it); a driver's error leaves both stores as the same StorageError. A database
 * of an older schema gains the newer columns when a store opens it.
 */

const T0 = 1_700_000_000_000;
const LEASE_MS = 60_000;

/** A trigger that makes every UPDATE of media_urls fail, in the store's dialect. */
const PLANT = {
  sqlite: `CREATE TRIGGER planted BEFORE UPDATE ON media_urls BEGIN SELECT RAISE(ABORT, 'planted failure'); END;`,
  postgres: `CREATE FUNCTION planted_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted failure'; END $$;
    CREATE TRIGGER planted BEFORE UPDATE ON media_urls FOR EACH ROW EXECUTE FUNCTION planted_failure();`,
};
const UNPLANT = { sqlite: `DROP TRIGGER planted;`, postgres: `DROP TRIGGER planted ON media_urls; DROP FUNCTION planted_failure();` };

describeEachStore('schema and rules parity', (h) => {
  it('the live tables hold exactly the columns of schema.ts, NOT NULL where it says so', async () => {
    await h.open();
    for (const table of TABLES) {
      const live =
        h.kind === 'sqlite'
          ? (await h.sql<{ name: string; notnull: number; pk: number }>(`SELECT name, "notnull", pk FROM pragma_table_info('${table.name}')`)).map((c) => ({
              name: c.name,
              notNull: c.notnull === 1 || c.pk === 1,
            }))
          : (
              await h.sql<{ column_name: string; is_nullable: string }>(
                `SELECT column_name, is_nullable FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
                [table.name],
              )
            ).map((c) => ({ name: c.column_name, notNull: c.is_nullable === 'NO' }));
      expect(live.map((c) => c.name).sort(), table.name).toEqual([...expectedColumns()[table.name]!].sort());
      const want = table.columns.map((c) => ({ name: c.name, notNull: c.type === 'serial' || /NOT NULL|PRIMARY KEY/.test(c.extra ?? '') || (table.constraints ?? []).some((k) => k.includes(c.name)) }));
      expect(live.sort((a, b) => a.name.localeCompare(b.name)), table.name).toEqual(want.sort((a, b) => a.name.localeCompare(b.name)));
    }
  });

  it('a claim is one transaction: when it fails part-way, the leases it expired are not expired and no media item is left', async () => {
    const store = await h.open();
    await store.seed(packItems(new RangeSet([{ start: 1, end: 10 }]), 10));
    const a = await store.registerNode({ nick: 'a', tokenHash: 'ta', now: T0 });
    const b = await store.registerNode({ nick: 'b', tokenHash: 'tb', now: T0 });
    expect((await store.claim({ nodeId: a.id, now: T0, leaseMs: LEASE_MS })).kind).toBe('lease');
    await store.queueMedia([{ url: 'http://127.0.0.1/a.png' }]);
    await h.exec(PLANT[h.kind]);
    const later = T0 + 2 * LEASE_MS; // a's lease is overdue: the claim expires it first
    try {
      const failed = await store.claim({ nodeId: b.id, now: later, leaseMs: LEASE_MS, only: 'media' }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failed).toBeInstanceOf(StorageError);
      expect((failed as Error).message).toMatch(/^tracker database: .*planted failure/);
      const items = await h.sql<{ kind: string; state: string; node_id: number | null }>(`SELECT kind, state, node_id FROM items WHERE project = $1 ORDER BY id`, [store.project]);
      expect(items.map((i) => [i.kind, i.state, Number(i.node_id)])).toEqual([['posts', 'claimed', a.id]]);
      expect(await store.mediaCounts()).toEqual({ urls: 1, done: 0, pending: 1, failed: 0 });
    } finally {
      await h.exec(UNPLANT[h.kind]);
    }
    const after = await store.claim({ nodeId: b.id, now: later, leaseMs: LEASE_MS, only: 'media' });
    expect(after.kind === 'lease' && after.lease.urls?.map((u) => u.url)).toEqual(['http://127.0.0.1/a.png']);
    expect(after.expired).toBe(1);
  });

  it('a driver error outside a transaction leaves as the same StorageError on both stores', async () => {
    const store = await h.open();
    await store.setSetting('k', 'v');
    await h.exec(`ALTER TABLE settings RENAME TO settings_away;`);
    try {
      const failed = await store.getSetting('k').then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failed).toBeInstanceOf(StorageError);
      expect((failed as Error).message).toMatch(/^tracker database: .*settings/);
      expect((failed as StorageError).cause).toBeInstanceOf(Error);
    } finally {
      await h.exec(`ALTER TABLE settings_away RENAME TO settings;`);
    }
    expect(await store.getSetting('k')).toBe('v');
  });

  it('a database of schema 4 (items without stalled_by, stalled_at) gains them when a store opens it; a lease it held stalls and marks its node', async () => {
    const old = await h.open();
    await old.seed(packItems(new RangeSet([{ start: 1, end: 10 }]), 10));
    const a = await old.registerNode({ nick: 'a', tokenHash: `${old.project}-a`, now: T0 });
    const b = await old.registerNode({ nick: 'b', tokenHash: `${old.project}-b`, now: T0 });
    const held = await old.claim({ nodeId: a.id, now: T0, leaseMs: 3600_000 });
    await h.exec(`ALTER TABLE items DROP COLUMN stalled_by; ALTER TABLE items DROP COLUMN stalled_at; UPDATE meta SET value = '4' WHERE key = 'schema_version';`);
    const store = await h.open(old.project);
    expect((await h.sql<{ value: string }>(`SELECT value FROM meta WHERE key = 'schema_version'`))[0]!.value).toBe(String(SCHEMA_VERSION));
    store.setPolicy({ stallMs: 10 * 60_000 });
    expect(await store.claim({ nodeId: a.id, now: T0 + 11 * 60_000, leaseMs: LEASE_MS })).toMatchObject({ kind: 'later', expired: 1 });
    const taken = await store.claim({ nodeId: b.id, now: T0 + 11 * 60_000, leaseMs: LEASE_MS });
    expect(taken.kind === 'lease' && taken.lease.itemId).toBe(held.kind === 'lease' && held.lease.itemId);
    const marked = await h.sql<{ stalled_by: number; stalled_at: number }>(`SELECT stalled_by, stalled_at FROM items WHERE project = $1`, [store.project]);
    expect(marked.map((m) => [Number(m.stalled_by), Number(m.stalled_at)])).toEqual([[a.id, T0 + 11 * 60_000]]);
  });
});
