import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import type { Logger } from '../../config/logger.js';

/**
 * `lifeboat crawl --ids 1-latest --follow` (issue 14): after the first range, ask the platform for
 * its highest ID every `everyMs` and crawl what is new, on one machine, until the signal fires
 * (Ctrl-C, `--until`, a cap). The range only grows: a discover that fails or answers lower than
 * the highest seen is logged and asked again at the next tick. The crawls go into one shard (each
 * round a resumed run over the new IDs), so every ID is crawled once.
 */
export interface FollowIdsOptions {
  /** The IDs of the first round (`1-latest` resolved). */
  first: RangeSet;
  /** The highest ID known when following starts (the `latest` the first round was resolved with). */
  highest: number;
  discover: () => Promise<number>;
  /** Crawls these IDs into the shard; resolves when the round is over (`aborted`: stopped by the signal). */
  crawl: (ids: RangeSet) => Promise<{ aborted: boolean }>;
  everyMs: number;
  signal: AbortSignal;
  logger: Logger;
}

export interface FollowIdsResult {
  highest: number;
  rounds: number;
  /** IDs crawled over all rounds (requested; some may already have been final). */
  ids: number;
}

export async function followIds(o: FollowIdsOptions): Promise<FollowIdsResult> {
  const log = o.logger.child('follow');
  let highest = o.highest;
  let rounds = 0;
  let ids = 0;
  let next: RangeSet | undefined = o.first;
  while (!o.signal.aborted) {
    if (next && !next.isEmpty) {
      rounds++;
      ids += next.size;
      const r = await o.crawl(next);
      next = undefined;
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
    if (answered < highest) {
      log.log('warn', `the platform's latest ID went backwards (${answered} < ${highest}); keeping ${highest}`);
      continue;
    }
    if (answered === highest) continue;
    log.log('info', `new posts: ${highest + 1}-${answered}`, { highest: answered });
    next = new RangeSet([{ start: highest + 1, end: answered }]);
    highest = answered;
  }
  return { highest, rounds, ids };
}
