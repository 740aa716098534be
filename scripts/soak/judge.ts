/**
 * How a fault scenario is judged, the same way in the quick tests and the soak: coverage,
 * `verify` defects, IDs lost, IDs final without their records, statuses against the platform's
 * ground truth (see reliability-scenarios.ts).
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { verifyPaths } from '../../storage/curate/verify.js';
import type { DemoPlatform } from '../demo/demo-platform.js';
import { shardDbPath, warcsDir } from '../../storage/shard/layout.js';

export interface Judgement {
  ids: number;
  /** IDs with a final status (not `failed`), anywhere. */
  final: number;
  failed: { id: number; lastError: string | null }[];
  /** IDs with no row anywhere: lost. */
  lost: number[];
  /** IDs final without the capture row holding the HTTP status that made them final. */
  finalWithoutRecords: number[];
  /** IDs whose final status differs from the platform's ground truth. */
  wrongStatus: string[];
  /** IDs final in more than one shard (node runs). */
  finalTwice: number[];
  /** `verify` defects: corrupt records, DB rows pointing nowhere, manifest mismatches. */
  defects: string[];
  records: number;
  warcs: number;
}

export const coverage = (j: Judgement): number => (100 * j.final) / j.ids;

/** Every shard directory below `root` (a crawl's DIR, or a node's DIR/items/*). */
export async function findShards(root: string): Promise<string[]> {
  if (existsSync(shardDbPath(root))) return [root];
  const out: string[] = [];
  if (!existsSync(root)) return out;
  for (const e of await readdir(root, { withFileTypes: true })) if (e.isDirectory()) out.push(...(await findShards(join(root, e.name))));
  return out;
}

const EXPECTED = { public: 'archived', missing: 'missing', gone: 'gone', private: 'restricted' } as const;

/**
 * Judges shard directories over IDs `start..end`. `verify` checks that every DB row points at a
 * real record of the right type and URI and that every archived ID has its 2xx response; on top,
 * every final ID must have the capture that shows its status (a 404 for `missing`, …).
 */
export async function judge(dirs: string[], ids: { start: number; end: number }, truth?: (id: number) => string | undefined): Promise<Judgement> {
  const report = await verifyPaths(dirs);
  const state = new Map<number, { status: string; lastError: string | null; captured: boolean; finalIn: number }>();
  let warcs = 0;
  for (const dir of dirs) {
    warcs += (await readdir(warcsDir(dir))).length;
    const db = new Database(shardDbPath(dir), { readonly: true });
    try {
      const rows = db
        .prepare<[], { id: number; status: string; last_error: string | null; captured: number }>(
          `SELECT i.id, i.status, i.last_error,
                  EXISTS (SELECT 1 FROM captures c WHERE c.post_id = i.id AND c.http_status = i.http_status) AS captured
           FROM ids i`,
        )
        .all();
      for (const r of rows) {
        const prev = state.get(r.id);
        const final = r.status !== 'failed';
        if (prev && prev.status !== 'failed') {
          if (final) prev.finalIn++;
          continue;
        }
        state.set(r.id, { status: r.status, lastError: r.last_error, captured: r.captured === 1, finalIn: final ? 1 : 0 });
      }
    } finally {
      db.close();
    }
  }
  const j: Judgement = {
    ids: ids.end - ids.start + 1,
    final: 0,
    failed: [],
    lost: [],
    finalWithoutRecords: [],
    wrongStatus: [],
    finalTwice: [],
    defects: report.defects.map((d) => `${d.file}@${d.offset ?? '-'}: ${d.what}`),
    records: report.records,
    warcs,
  };
  for (let id = ids.start; id <= ids.end; id++) {
    const s = state.get(id);
    if (!s) j.lost.push(id);
    else if (s.status === 'failed') j.failed.push({ id, lastError: s.lastError });
    else {
      j.final++;
      if (!s.captured) j.finalWithoutRecords.push(id);
      if (s.finalIn > 1) j.finalTwice.push(id);
      const want = truth?.(id);
      if (want !== undefined && want !== s.status) j.wrongStatus.push(`${id}: ${s.status}, expected ${want}`);
    }
  }
  return j;
}

export const demoTruth = (platform: Pick<DemoPlatform, 'post'>) => (id: number) => EXPECTED[platform.post(id).status];

export interface ScenarioResult {
  judgement: Judgement;
  /** Exit codes of the runs, in order. */
  exits: number[];
  /** What the platform (or tracker) went through. */
  notes: Record<string, number | string>;
  seconds: number;
}
