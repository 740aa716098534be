/**
 * `npm run soak`: the long version of the reliability suite (issue 7). Runs every fault scenario
 * of scripts/soak/reliability-scenarios.ts and tracker-faults.ts with large numbers and repetitions — ≥ 20 random kill -9s
 * of a crawl, a 30 s platform outage, tracker kills on SQLite and PostgreSQL — and writes
 * RELIABILITY.md: each scenario, how often it ran, and the result (coverage, corrupt records,
 * IDs lost). Not part of `npm test`.
 *
 *   npm run soak                      # everything, ~10-15 minutes on 2 cores
 *   node dist/scripts/soak/soak.js --only outage,kill   # a subset (keys as in --only): rows printed, RELIABILITY.md kept (--write replaces it)
 *   LIFEBOAT_SOAK_PG=postgres://postgres@127.0.0.1:5432/test   # the PostgreSQL tracker run
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pgReachable } from '../../tracker/store/open-store.js';
import { coverage, type ScenarioResult } from './judge.js';
import { endlessRoute, hostileCrawl, killResume, platformFault, platformOutage, rateLimitStorm, redirectRoute } from './reliability-scenarios.js';
import { trackerFaults } from './tracker-faults.js';
import { poisonCrawl, poisonTracker } from './poison-scenario.js';
import { rescueRehearsal, type RescueOptions } from './rescue-scenario.js';

interface Row {
  key: string;
  scenario: string;
  runs: number;
  ids: number;
  coverage: number;
  failedIds: number;
  corrupt: number;
  lost: number;
  finalWithoutRecords: number;
  twice: number;
  exits: string;
  seconds: number;
  note: string;
  ok: boolean;
}

type Expect = 'complete' | { failed: number };

async function scenario(rows: Row[], key: string, name: string, repeat: number, run: (i: number) => Promise<ScenarioResult>, expect: Expect = 'complete', note = (_r: ScenarioResult) => ''): Promise<void> {
  const row: Row = { key, scenario: name, runs: 0, ids: 0, coverage: 100, failedIds: 0, corrupt: 0, lost: 0, finalWithoutRecords: 0, twice: 0, exits: '', seconds: 0, note: '', ok: true };
  const exits = new Map<string, number>();
  for (let i = 0; i < repeat; i++) {
    let r: ScenarioResult;
    try {
      r = await run(i);
    } catch (err) {
      row.ok = false;
      row.note = `error: ${(err as Error).message.slice(0, 200)}`;
      break;
    }
    const j = r.judgement;
    row.runs++;
    row.ids += j.ids;
    row.coverage = Math.min(row.coverage, coverage(j));
    row.failedIds += j.failed.length;
    row.corrupt += j.defects.length + j.wrongStatus.length;
    row.twice += j.finalTwice.length;
    row.lost += j.lost.length;
    row.finalWithoutRecords += j.finalWithoutRecords.length;
    row.seconds += r.seconds;
    for (const e of r.exits) exits.set(String(e), (exits.get(String(e)) ?? 0) + 1);
    row.note = note(r);
    const complete = expect === 'complete' ? j.failed.length === 0 && coverage(j) === 100 : j.failed.length === expect.failed;
    if (!complete || j.defects.length > 0 || j.lost.length > 0 || j.finalWithoutRecords.length > 0 || j.wrongStatus.length > 0) {
      row.ok = false;
      row.note += ` [run ${i}: ${JSON.stringify({ failed: j.failed.slice(0, 3), defects: j.defects.slice(0, 2), lost: j.lost.length, wrongStatus: j.wrongStatus.slice(0, 3), finalTwice: [j.finalTwice.length, ...j.finalTwice.slice(0, 5)], notes: r.notes }).slice(0, 400)}]`;
    }
  }
  row.exits = [...exits].map(([k, v]) => `${k}×${v}`).join(' ');
  rows.push(row);
  process.stdout.write(`${row.ok ? 'ok  ' : 'FAIL'} ${name}: ${row.runs} runs, coverage ${row.coverage.toFixed(1)}%, corrupt ${row.corrupt}, lost ${row.lost}, ${row.seconds.toFixed(0)} s ${row.note}\n`);
}

/** A rescue rehearsal's row: its own judgement (the merge against the platform's truth), in the table's columns. */
async function rescueRow(rows: Row[], key: string, name: string, o: RescueOptions): Promise<void> {
  const row: Row = { key, scenario: name, runs: 1, ids: 0, coverage: 0, failedIds: 0, corrupt: 0, lost: 0, finalWithoutRecords: 0, twice: 0, exits: '', seconds: 0, note: '', ok: false };
  try {
    const r = await rescueRehearsal(o);
    const n = r.notes;
    row.ids = Number(n.finalPosts);
    row.coverage = (100 * (Number(n.finalPosts) - Number(n.wrongIds))) / Number(n.finalPosts);
    row.corrupt = Number(n.defects) + Number(n.wrongIds);
    row.seconds = r.seconds;
    row.ok = r.ok;
    row.note = `stats ≤ ${n.statsMaxMs} ms over ${n.statsSamples} polls, every one answered; seeded up to ${n.seededMax} of ${n.finalPosts}; ${n.kills} kills; media of public posts missing ${n.mediaMissing} (poison ${n.poison}, listed); hoarder granted ${n.hoarderLeases} leases (${n.hoarderLeasesLost} lost, ${n.hoarderStalls} taken for no progress, ${n.hoarderReheld} of those granted to it again; ${n.hoarderAsksAfterStall} asks after its first stall), ${n.stalledLeases} stalled leases in stats; flooder sent ${n.floodSent} junk URLs, ${n.floodQueued} queued, ${n.refusedMedia} refused${r.ok ? '' : `; FAILED: ${r.failures.join('; ')}`}`;
  } catch (err) {
    row.note = `error: ${(err as Error).message.slice(0, 300)}`;
  }
  rows.push(row);
  process.stdout.write(`${row.ok ? 'ok  ' : 'FAIL'} ${name}: ${row.note}\n`);
}

async function main(): Promise<number> {
  const only = process.argv.includes('--only') ? new Set(process.argv[process.argv.indexOf('--only') + 1]!.split(',')) : undefined;
  const want = (key: string) => !only || only.has(key);
  const tmp = await mkdtemp(join(tmpdir(), 'lifeboat-soak-'));
  const rows: Row[] = [];
  const started = Date.now();
  const pgUrl = process.env.LIFEBOAT_SOAK_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `lb_soak_${process.pid}`;
  try {
    const d = (name: string, i: number) => join(tmp, `${name}-${i}`);
    if (want('5xx')) await scenario(rows, '5xx', '5xx bursts (60% of requests, ≤3 in a row per URL)', 3, (i) => platformFault({ dir: d('5xx', i), kind: '5xx', posts: 150, rate: 0.6 }));
    if (want('reset')) await scenario(rows, 'reset', 'connection reset mid-body (60%)', 3, (i) => platformFault({ dir: d('reset', i), kind: 'reset', posts: 150, rate: 0.6 }));
    if (want('short')) await scenario(rows, 'short', 'body shorter than Content-Length (60%)', 3, (i) => platformFault({ dir: d('short', i), kind: 'short', posts: 150, rate: 0.6 }));
    if (want('stall')) await scenario(rows, 'stall', 'stalls of 30 s vs 800/500 ms timeouts (30%)', 2, (i) => platformFault({ dir: d('stall', i), kind: 'stall', posts: 100, rate: 0.3, stallMs: 30_000 }));
    if (want('429')) await scenario(rows, '429', '429 storm with Retry-After', 2, (i) => rateLimitStorm({ dir: d('429', i), posts: 80, rps: 30, retryAfter: true }), 'complete', (r) => `${r.notes.rateLimited} × 429`);
    if (want('429-bare')) await scenario(rows, '429-bare', '429 storm without Retry-After', 2, (i) => rateLimitStorm({ dir: d('429b', i), posts: 80, rps: 30, retryAfter: false }), 'complete', (r) => `${r.notes.rateLimited} × 429`);
    if (want('outage')) {
      await scenario(rows, 'outage', 'platform down 30 s (connection refused), back on the same port; the same command re-run until exit 0', 1,
        (i) => platformOutage({ dir: d('outage', i), posts: 600, afterMs: 1500, downMs: 30_000, maxRuns: 4 }), 'complete',
        (r) => `runs per crawl: ${r.exits.length} (exits ${r.exits.join(', ')})`);
    }
    if (want('redirect')) {
      await scenario(rows, 'redirect', 'redirect loops and endless redirect chains (permanent: 3 IDs of 30 failed, exit 3)', 2,
        (i) => hostileCrawl({ dir: d('redir', i), posts: 30, route: () => redirectRoute(new Set([3, 17]), new Set([9])) }), { failed: 3 });
    }
    if (want('endless')) {
      await scenario(rows, 'endless', 'responses that never end (cut at max_body_bytes 256 KiB, archived truncated)', 2,
        (i) => hostileCrawl({ dir: d('endless', i), posts: 30, route: () => endlessRoute(new Set([2, 11, 20])), politeness: { max_body_bytes: 262_144 } }), 'complete',
        (r) => `${Math.round(Number(r.notes.endlessBytes) / 2 ** 20)} MiB sent by the server`);
    }
    if (want('poison')) {
      await scenario(rows, 'poison', 'poison posts (5,000-deep JSON field, 200k-entry media list, 200k nested <div>s, 3 MiB bodies over max_body_bytes 2 MiB): crawl', 1,
        (i) => poisonCrawl({ dir: d('poison', i), posts: 120 }), 'complete', (r) => `${r.notes.poison} poison posts archived; without an extraction note: ${r.notes.unnoted}`);
    }
    if (want('poison-tracker')) {
      await scenario(rows, 'poison-tracker', 'the same poison posts through a 2-node tracker run', 1,
        (i) => poisonTracker({ dir: d('poisontrk', i), posts: 120, nodes: 2 }), 'complete',
        (r) => `items ${r.notes.itemsDone}/${r.notes.itemsTotal}; without an extraction note: ${r.notes.unnoted}${r.notes.badExit ? `; a node exited: ${r.notes.badExit}` : ''}`);
    }
    if (want('kill')) {
      await scenario(rows, 'kill', 'kill -9 of a crawl at random moments (≥ 20 kills), then one run to the end', 1,
        (i) => killResume({ dir: d('kill', i), posts: 6000, kills: 22, seed: 11 + i }), 'complete', (r) => `${r.notes.kills} kills`);
    }
    if (want('kill-workers')) {
      await scenario(rows, 'kill-workers', 'kill -9 of a crawl split between 2 worker threads (≥ 10 kills), then one run to the end', 1,
        (i) => killResume({ dir: d('killw', i), posts: 3000, kills: 10, seed: 23 + i, workers: 2 }), 'complete', (r) => `${r.notes.kills} kills`);
    }
    if (want('tracker-sqlite')) {
      await scenario(rows, 'tracker-sqlite', 'tracker (SQLite) killed -9 ×4 while 4 nodes run', 1,
        (i) => trackerFaults({ dir: d('trk', i), db: `sqlite:${join(tmp, `trk-${i}.sqlite`)}`, posts: 600, nodes: 4, kills: 4, downMs: 2000, deadlineMs: 300_000 }), 'complete',
        (r) => `${r.notes.trackerKills} kills, items ${r.notes.itemsDone}/${r.notes.itemsTotal}`);
    }
    if (want('tracker-away')) {
      await scenario(rows, 'tracker-away', 'tracker unreachable for 20 s while 3 nodes run', 1,
        (i) => trackerFaults({ dir: d('away', i), db: `sqlite:${join(tmp, `away-${i}.sqlite`)}`, posts: 300, nodes: 3, kills: 1, downMs: 20_000, firstKillMs: 1000, deadlineMs: 300_000 }), 'complete',
        (r) => `items ${r.notes.itemsDone}/${r.notes.itemsTotal}`);
    }
    if (want('tracker-pg')) {
      if (await pgReachable(pgUrl)) {
        await scenario(rows, 'tracker-pg', 'tracker (PostgreSQL) killed -9 ×3 while 4 nodes run', 1,
          (i) => trackerFaults({ dir: d('trkpg', i), db: `${pgUrl}?schema=${schema}_${i}`, posts: 600, nodes: 4, kills: 3, downMs: 2000, deadlineMs: 300_000 }), 'complete',
          (r) => `${r.notes.trackerKills} kills, items ${r.notes.itemsDone}/${r.notes.itemsTotal}`);
      } else process.stdout.write(`skip tracker-pg: PostgreSQL not reachable at ${pgUrl}\n`);
    }
    if (want('pg-drop')) {
      if (await pgReachable(pgUrl)) {
        await scenario(rows, 'pg-drop', 'PostgreSQL drops every tracker connection ×5 under load (a database restart as the tracker sees it)', 1,
          (i) => trackerFaults({ dir: d('pgdrop', i), db: `${pgUrl}?schema=${schema}_drop_${i}&application_name=lifeboat-soak-${process.pid}-${i}`, posts: 600, nodes: 4, kills: 5, downMs: 500, fault: 'drop-db', deadlineMs: 300_000 }), 'complete',
          (r) => `${r.notes.droppedConnections} connections terminated in ${r.notes.trackerKills} rounds, items ${r.notes.itemsDone}/${r.notes.itemsTotal}`);
      } else process.stdout.write(`skip pg-drop: PostgreSQL not reachable at ${pgUrl}\n`);
    }
    for (const store of ['sqlite', 'pg'] as const) {
      const key = `rescue-${store}`;
      if (!want(key)) continue;
      if (store === 'pg' && !(await pgReachable(pgUrl))) {
        process.stdout.write(`skip ${key}: PostgreSQL not reachable at ${pgUrl}\n`);
        continue;
      }
      const db = store === 'sqlite' ? `sqlite:${join(tmp, 'rescue.sqlite')}` : `${pgUrl}?schema=${schema}_rescue`;
      const o: RescueOptions = { dir: join(tmp, key), db, startPosts: 400, finalPosts: 1600, growPerSec: 20, lagIds: 30, nodes: 3, kills: 6, poisonMedia: 4, deadlineMs: 600_000 };
      await rescueRow(rows, key, `a whole rescue (${store === 'sqlite' ? 'SQLite' : 'PostgreSQL'} tracker): platform growing 400 → 1,600 posts with latest 30 IDs ahead of what is readable and one latest of 10^15, 4 poison media, 3 honest nodes killed -9 ×6 and restarted, a hoarding and a flooding node; merged and checked against the platform`, o);
    }
  } finally {
    if (await pgReachable(pgUrl)) {
      const client = new pg.Client({ connectionString: pgUrl });
      await client.connect();
      for (let i = 0; i < 2; i++) {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}_${i}" CASCADE`);
        await client.query(`DROP SCHEMA IF EXISTS "${schema}_drop_${i}" CASCADE`);
      }
      await client.query(`DROP SCHEMA IF EXISTS "${schema}_rescue" CASCADE`);
      await client.end();
    }
    await rm(tmp, { recursive: true, force: true });
  }
  const minutes = (Date.now() - started) / 60_000;
  const lines = [
    '# Reliability',
    '',
    `Produced by \`npm run soak\` (scripts/soak/soak.ts) on ${new Date().toISOString().slice(0, 10)} in ${minutes.toFixed(1)} minutes, Node ${process.version}. Re-run it to refresh this file.`,
    'Every scenario runs lifeboat against a local platform on 127.0.0.1 (the demo platform, or the hostile server of scripts/soak/hostile-server.ts), then judges each shard:',
    '**coverage** = IDs with a final status / IDs requested (for permanent faults the IDs that must fail are the expected `failed`);',
    '**corrupt** = `lifeboat verify` defects (bad digests, torn records, DB rows pointing nowhere, manifest mismatches) + IDs whose status differs from the platform\'s ground truth;',
    '**done twice** = IDs final in two nodes\' shards: duplicate work, not damage (`merge` keeps one copy) — it happens when a lease expires while its node is still working on it, see the note below;',
    '**lost** = IDs with no row at all; **final w/o records** = IDs final without the capture that shows their HTTP status.',
    '',
    '| scenario | runs | IDs | coverage (min) | failed IDs | corrupt | lost | final w/o records | done twice | exit codes | time | result | notes |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|',
    ...rows.map((r) => `| ${r.scenario} | ${r.runs} | ${r.ids} | ${r.coverage.toFixed(1)}% | ${r.failedIds} | ${r.corrupt} | ${r.lost} | ${r.finalWithoutRecords} | ${r.twice} | ${r.exits} | ${r.seconds.toFixed(0)} s | ${r.ok ? 'pass' : '**FAIL**'} | ${r.note.replace(/\|/g, '\\|')} |`),
    '',
    'Notes. A platform that refuses connections is waited out for up to `politeness.max_outage_ms` (5 minutes) without using up retries, so a',
    '30 s outage ends in one run with nothing failed; the outage row counts the runs a crawl needed (the same command re-run until exit 0).',
    'Tracker restarts: nodes cannot heartbeat while the tracker is down, so a restarted tracker gives the leases that were live when it was last',
    'alive the time it was away (it records `alive_at` every 5 s). Without that, leases expired during the outage and another node redid IDs',
    'finished but not yet reported (the first session measured 80 and 40 IDs "done twice" in the two tracker rows below; 0 since).',
    '',
    'Also covered by `npm test` (quick versions, not repeated here): disk full on a 400 KiB tmpfs then resumed (test/crawl-input.test.ts),',
    '8 nodes killed -9 twelve times (test/node-e2e.test.ts), 5% mixed chaos + 429 (test/crawl.test.ts), and the hostile-input suite',
    '(test/reliability-hostile.test.ts: gzip/brotli bombs, endless headers, invalid UTF-8 and malformed JSON/HTML, out-of-scope media and redirects',
    'against a canary on 127.0.0.2, `../` names in shard.json and tracker replies, 2,000 seeded WARC-reader fuzz cases, tracker API abuse).',
    '',
  ];
  if (only && !process.argv.includes('--write')) {
    // A subset is not the report: print its rows instead of replacing RELIABILITY.md with them.
    process.stdout.write(`${lines.filter((l) => l.startsWith('|')).join('\n')}\n(a subset: RELIABILITY.md left as it is; --write replaces it)\n`);
  } else {
    await writeFile('RELIABILITY.md', lines.join('\n'));
    process.stdout.write(`wrote RELIABILITY.md (${rows.length} scenarios, ${minutes.toFixed(1)} min)\n`);
  }
  return rows.every((r) => r.ok) ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
