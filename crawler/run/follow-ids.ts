import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import type { Logger } from '../../config/logger.js';
import { RECHECK_DEFAULTS, defaultConfirmMs, describeVerdict, judgeLatest, keepYoung, recheckDelayMs, recheckable, type AcceptedRange, type LatestState, type RecheckOptions } from '../../config/live-edge.js';
import { ShardDb } from '../../storage/shard/shard-db.js';
import { shardDbPath } from '../../storage/shard/layout.js';

/**
 * `lifeboat crawl --ids 1-latest --follow` (issue 14): after the first range, ask the platform for
 * its highest ID every `everyMs` and crawl what is new, on one machine, until the signal fires
 * (Ctrl-C, `--until`, a cap). The crawls go into one shard (each round a resumed run over the new
 * IDs), so every ID is crawled once.
 *
 * The live edge (issue 21 §1, config/live-edge.ts, the same rules as the tracker's `follow:`): the
 * range only grows; a discover that fails or answers lower is logged and asked again at the next
 * tick; a jump far above the trend is held until a later poll confirms it. An ID near the edge
 * (within the window of the newest, or accepted by a poll less than `recheck.ageMs` ago) that
 * answers `missing` (announced before it was readable) is asked again in a later round, a few
 * times, spaced, before its `missing` is final. The ranges the polls accepted, with their time,
 * are kept in the shard (`ages`), so a run started again on it knows how young they are.
 */
export interface FollowIdsOptions {
  /** The IDs of the first round (`1-latest` resolved). */
  first: RangeSet;
  /** The highest ID known when following starts (the `latest` the first round was resolved with). */
  highest: number;
  discover: () => Promise<number>;
  /**
   * Crawls these IDs into the shard; resolves when the round is over (`aborted`: stopped by the
   * signal). `live.recheck`: IDs whose `missing` is asked again; `live.watch`: the IDs near the edge
   * whose `missing` the round must report back (`missing`).
   */
  crawl: (ids: RangeSet, live: { recheck: RangeSet; watch: RangeSet }) => Promise<{ aborted: boolean; missing: readonly number[] }>;
  everyMs: number;
  signal: AbortSignal;
  logger: Logger;
  /** `--follow-max-step`: a fixed largest jump accepted without confirmation; default derived from the trend. */
  maxStep?: number;
  /** `--follow-confirm-secs` × 1000: how long a held jump must be seen before it is accepted; default `defaultConfirmMs(everyMs)`. */
  confirmMs?: number;
  /** The live edge's rechecks of `missing` IDs; default RECHECK_DEFAULTS. */
  recheck?: Partial<RecheckOptions>;
  /** `--recheck missing`: the first round also asks again for these IDs the shard holds as `missing`. */
  firstRecheck?: RangeSet;
  /** Where the ranges the polls accepted are kept between runs (`shardFollowAges`); default: this run only. */
  ages?: FollowAges;
  /** The clock (tests); default Date.now. */
  now?: () => number;
}

/** The ranges a follow's polls accepted, with when (the IDs' age), kept between runs. */
export interface FollowAges {
  load(): AcceptedRange[];
  save(accepted: readonly AcceptedRange[]): void;
}

/** The shard's meta key holding the accepted ranges: JSON `[[start, end, at], …]`. */
export const FOLLOW_ACCEPTED_KEY = 'follow_accepted';

/**
 * The accepted ranges in the shard at `dir` (meta `follow_accepted`), saved as a poll accepts new
 * IDs (before they are crawled: a run stopped before it reached them leaves their age to the
 * next). A shard that does not exist yet (no round ran) holds none.
 */
export function shardFollowAges(dir: string): FollowAges {
  const path = shardDbPath(dir);
  return {
    load: () => {
      if (!existsSync(path)) return [];
      const db = new ShardDb(path, { readonly: true });
      try {
        const text = db.getMeta(FOLLOW_ACCEPTED_KEY);
        return text ? (JSON.parse(text) as [number, number, number][]).map(([start, end, at]) => ({ start, end, at })) : [];
      } finally {
        db.close();
      }
    },
    save: (accepted) => {
      if (!existsSync(path)) return;
      const db = new ShardDb(path);
      try {
        db.setMeta(FOLLOW_ACCEPTED_KEY, JSON.stringify(accepted.map((r) => [r.start, r.end, r.at])));
      } finally {
        db.close();
      }
    },
  };
}

export interface FollowIdsResult {
  highest: number;
  rounds: number;
  /** IDs crawled over all rounds (requested; some may already have been final). */
  ids: number;
  /** IDs near the edge that answered `missing` first and were asked again. */
  rechecked: number;
  /** IDs still waiting for a recheck when the follow stopped. */
  pendingRechecks: number;
}

export async function followIds(o: FollowIdsOptions): Promise<FollowIdsResult> {
  const log = o.logger.child('follow');
  const now = o.now ?? Date.now;
  const recheck: RecheckOptions = { ...RECHECK_DEFAULTS, ...o.recheck };
  let edge: LatestState = { highest: o.highest, steps: [] };
  let rounds = 0;
  let ids = 0;
  let rechecked = 0;
  /** The ranges the polls accepted (this run's and, from the shard, earlier runs'), young enough to matter. */
  let accepted = keepYoung(o.ages?.load() ?? [], now(), recheck);
  /** Lagging IDs: how many rechecks each has had and when the next is due. */
  const lagging = new Map<number, { attempt: number; due: number }>();
  let next: RangeSet | undefined = o.first;
  while (!o.signal.aborted) {
    const t = now();
    const dueIds = [...lagging].filter(([, l]) => l.due <= t).map(([id]) => id);
    const due = new RangeSet(dueIds.map((id) => ({ start: id, end: id })));
    const todo = (next ?? new RangeSet()).union(due);
    if (!todo.isEmpty) {
      rounds++;
      ids += todo.size;
      // The IDs whose `missing` this round reports back: near the edge by the window or by their age.
      const watch = recheckable(todo, { highest: edge.highest, accepted }, t, recheck).union(due);
      if (!due.isEmpty) log.log('info', `asking again for ${due.size} IDs near the live edge that answered missing`, { ids: due.format() });
      const r = await o.crawl(todo, { recheck: rounds === 1 && o.firstRecheck ? due.union(o.firstRecheck) : due, watch });
      next = undefined;
      rechecked += due.size;
      const stillMissing = new Set(r.missing);
      for (const id of dueIds) {
        if (stillMissing.has(id)) continue;
        lagging.delete(id);
        log.log('info', `ID ${id} answered after a recheck`, { id });
      }
      for (const id of stillMissing) {
        const attempt = due.has(id) ? (lagging.get(id)?.attempt ?? 0) + 1 : lagging.has(id) ? -1 : 0;
        if (attempt < 0) continue; // not yet due: keeps its schedule
        const delay = recheckDelayMs(attempt, recheck);
        if (delay === undefined) {
          lagging.delete(id);
          log.log('info', `ID ${id} still answers missing after ${recheck.attempts} rechecks: final`, { id });
        } else {
          lagging.set(id, { attempt, due: now() + delay });
        }
      }
      if (r.aborted || o.signal.aborted) break;
    }
    await sleep(o.everyMs, undefined, { signal: o.signal }).catch(() => undefined);
    if (o.signal.aborted) break;
    let answered: number;
    try {
      answered = await o.discover();
    } catch (err) {
      log.log('warn', `discovering the latest ID failed (asking again in ${Math.round(o.everyMs / 1000)} s): ${errorMessage(err)}`);
      continue;
    }
    const judged = judgeLatest(edge, answered, { maxStep: o.maxStep, confirmMs: o.confirmMs ?? defaultConfirmMs(o.everyMs), now: now() });
    const before = edge.highest;
    edge = judged.state;
    const said = describeVerdict(judged.verdict);
    if (said) log.log(judged.verdict.kind === 'confirmed' ? 'info' : 'warn', said, { answered, highest: edge.highest });
    if (edge.highest > before) {
      log.log('info', `new posts: ${before + 1}-${edge.highest}`, { highest: edge.highest });
      next = new RangeSet([{ start: before + 1, end: edge.highest }]);
      // Their age starts now (the first range, resolved before following, has none).
      const at = now();
      if (before > 0 && recheck.ageMs > 0) {
        accepted = [...keepYoung(accepted, at, recheck), { start: before + 1, end: edge.highest, at }];
        o.ages?.save(accepted);
      }
    }
  }
  return { highest: edge.highest, rounds, ids, rechecked, pendingRechecks: lagging.size };
}
