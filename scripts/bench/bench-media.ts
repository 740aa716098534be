/**
 * Tracker media dedupe benchmark (issue 13): how many reported media URLs per second the store
 * absorbs (never-seen ones, which are inserted, and already-seen ones, which the unique hash
 * turns away), with reports of 500 URLs riding on heartbeats as nodes send them, and how many
 * bytes the media_urls table and its indexes take per URL. SQLite and PostgreSQL. The "no
 * SeenUrls" case measures what the in-memory cache of seen hashes in front of the table saves.
 *
 *   npm run build && node dist/scripts/bench/bench-media.js [--urls N] [--reporters N] [--no-postgres]
 *
 * Each case is bounded (default 200,000 URLs); the table size is extrapolated to 10^8 URLs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { RangeSet } from '../../config/id-ranges.js';
import { type ItemStore, type Lease, packItems } from '../../tracker/store/item-store.js';
import { mediaUrlHash } from '../../tracker/store/media-urls.js';
import { openItemStore } from '../../tracker/store/open-store.js';

export interface MediaRow {
  store: 'sqlite' | 'postgres';
  case: string;
  urls: number;
  reporters: number;
  seconds: number;
  urlsPerSec: number;
}

const REPORT = 500;
const T0 = Date.now();

/** A platform-like media URL (~100 characters: a CDN host, a sharded path, a hash, an extension). */
function mediaUrl(i: number): string {
  const h = mediaUrlHash('bench', String(i)).toString('hex');
  return `https://media.platform.example/media_attachments/files/${h.slice(0, 3)}/${h.slice(3, 6)}/${h.slice(6, 9)}/original/${h.slice(9, 25)}.${i % 10 === 0 ? 'mp4' : 'jpg'}`;
}

async function reportAll(stores: ItemStore[], leases: { nodeId: number; lease: Lease }[], from: number, count: number): Promise<number> {
  const started = performance.now();
  let next = from;
  const end = from + count;
  await Promise.all(
    stores.map(async (store, w) => {
      const { nodeId, lease } = leases[w]!;
      while (next < end) {
        const start = next;
        next += REPORT;
        const media = Array.from({ length: Math.min(REPORT, end - start) }, (_, k) => ({ url: mediaUrl(start + k) }));
        await store.heartbeat({ nodeId, leaseId: lease.leaseId, finished: new RangeSet(), now: T0, leaseMs: 3_600_000, media });
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

async function benchStore(kind: 'sqlite' | 'postgres', db: string, urls: number, reporters: number, sizeOf: () => Promise<number>): Promise<{ rows: MediaRow[]; bytesPerUrl: number }> {
  const stores = await Promise.all(Array.from({ length: reporters }, () => openItemStore({ db, project: 'bench', maxConnections: 4 })));
  try {
    await stores[0]!.seed(packItems(new RangeSet([{ start: 1, end: reporters * 10 }]), 10));
    const leases: { nodeId: number; lease: Lease }[] = [];
    for (const [i, store] of stores.entries()) {
      const node = await store.registerNode({ nick: `r${i}`, tokenHash: `bench-${i}`, now: T0 });
      const claim = await store.claim({ nodeId: node.id, now: T0, leaseMs: 3_600_000, only: 'posts' });
      if (claim.kind !== 'lease') throw new Error('bench: no post item to report against');
      leases.push({ nodeId: node.id, lease: claim.lease });
    }
    const before = await sizeOf();
    const rows: MediaRow[] = [];
    const row = (name: string, seconds: number): MediaRow => ({ store: kind, case: name, urls: urls, reporters, seconds: round(seconds), urlsPerSec: Math.round(urls / seconds) });
    rows.push(row('never seen (inserted)', await reportAll(stores, leases, 0, urls)));
    const bytesPerUrl = ((await sizeOf()) - before) / urls;
    rows.push(row('all seen (turned away)', await reportAll(stores, leases, 0, urls)));
    // Again, once the database has settled after the bulk insert (PostgreSQL's checkpoint/autovacuum).
    rows.push(row('all seen, again', await reportAll(stores, leases, 0, urls)));
    // Shared media as nodes meet them: half of each report seen before.
    rows.push(row('half seen', await reportAll(stores, leases, urls / 2, urls)));
    // The same "all seen" reports through stores without the in-memory SeenUrls: every URL costs a database round.
    const cold = await Promise.all(Array.from({ length: reporters }, () => openItemStore({ db, project: 'bench', maxConnections: 4, seenCache: 0 })));
    try {
      rows.push(row('all seen, no SeenUrls', await reportAll(cold, leases, 0, urls)));
    } finally {
      for (const s of cold) await s.close();
    }
    return { rows, bytesPerUrl: Math.round(bytesPerUrl) };
  } finally {
    for (const s of stores) await s.close();
  }
}

const round = (n: number) => Math.round(n * 100) / 100;

export async function runMediaBench(options: { urls?: number; reporters?: number; postgresUrl?: string | null } = {}) {
  const { urls = 200_000, reporters = 4, postgresUrl = 'postgres://postgres@127.0.0.1:5432/test' } = options;
  const out: { rows: MediaRow[]; bytesPerUrl: Record<string, number> } = { rows: [], bytesPerUrl: {} };
  const dir = mkdtempSync(join(tmpdir(), 'lifeboat-bench-media-'));
  try {
    const file = join(dir, 'tracker.sqlite');
    const sqliteSize = async () => {
      const db = new Database(file, { readonly: true });
      try {
        // Pages in use (file pages minus the free list): the WAL is checkpointed by then or counted alike.
        const pages = Number(db.pragma('page_count', { simple: true })) - Number(db.pragma('freelist_count', { simple: true }));
        return pages * Number(db.pragma('page_size', { simple: true }));
      } finally {
        db.close();
      }
    };
    const s = await benchStore('sqlite', `sqlite:${file}`, urls, reporters, sqliteSize);
    out.rows.push(...s.rows);
    out.bytesPerUrl.sqlite = s.bytesPerUrl;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (postgresUrl) {
    const schema = `bench_media_${process.pid}`;
    const admin = new pg.Client({ connectionString: postgresUrl });
    await admin.connect();
    try {
      const size = async () =>
        Number((await admin.query<{ n: string }>(`SELECT COALESCE(pg_total_relation_size(to_regclass('${schema}.media_urls')), 0) AS n`)).rows[0]!.n);
      const p = await benchStore('postgres', `${postgresUrl}?schema=${schema}`, urls, reporters, size);
      out.rows.push(...p.rows);
      out.bytesPerUrl.postgres = p.bytesPerUrl;
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? Number(args[i + 1]) : undefined;
  };
  const result = await runMediaBench({
    ...(value('--urls') ? { urls: value('--urls') } : {}),
    ...(value('--reporters') ? { reporters: value('--reporters') } : {}),
    ...(args.includes('--no-postgres') ? { postgresUrl: null } : {}),
  });
  console.log('| store | case | URLs | reporters | seconds | URLs/s |\n|---|---|---:|---:|---:|---:|');
  for (const r of result.rows) console.log(`| ${r.store} | ${r.case} | ${r.urls.toLocaleString('en-US')} | ${r.reporters} | ${r.seconds} | ${r.urlsPerSec.toLocaleString('en-US')} |`);
  for (const [store, bytes] of Object.entries(result.bytesPerUrl)) {
    console.log(`${store}: ${bytes} bytes per URL (table and indexes, all pending) → ${((bytes * 1e8) / 1e9).toFixed(1)} GB at 10^8 URLs`);
  }
}
