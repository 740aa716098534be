import type { IdStatus } from '../../storage/shard/shard-db.js';

const SCALARS = ['done', 'records', 'bytes', 'warcs', 'throttles', 'retries', 'errors', 'mediaDone', 'mediaFailed', 'mediaSkipped', 'extractionNotes'] as const;

export type StatsCounters = { ids: Record<IdStatus, number> } & Record<(typeof SCALARS)[number], number>;

/**
 * Live counters of a run, read by the progress display and the summary line. They change only
 * through the methods below (and `setSum`, where a main thread adds up its workers' counters).
 */
export class CrawlStats {
  readonly started = Date.now();
  readonly ids: Record<IdStatus, number> = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 };
  total = 0;
  /** A media item's URLs to fetch (it has no IDs: `total` is 0). */
  mediaTotal = 0;
  done = 0;
  records = 0;
  bytes = 0;
  warcs = 0;
  throttles = 0;
  retries = 0;
  errors = 0;
  mediaDone = 0;
  mediaFailed = 0;
  mediaSkipped = 0;
  /** Final IDs whose extraction was cut or failed (the response is archived; ids.last_error says why). */
  extractionNotes = 0;

  /** The counters alone (what a crawl worker sends to the main thread). */
  counters(): StatsCounters {
    const out = { ids: { ...this.ids } } as StatsCounters;
    for (const k of SCALARS) out[k] = this[k];
    return out;
  }

  /** Sets every counter to the sum of the parts' latest counters. */
  setSum(parts: Iterable<StatsCounters>): void {
    const list = [...parts];
    for (const k of Object.keys(this.ids) as IdStatus[]) this.ids[k] = list.reduce((n, p) => n + p.ids[k], 0);
    for (const k of SCALARS) this[k] = list.reduce((n, p) => n + p[k], 0);
  }

  /** An ID became final (counted once its commit is done). */
  count(status: IdStatus): void {
    this.ids[status]++;
    this.done++;
  }

  /** Records written to the WARCs; `warcsClosed` is the recorder's running count of finished files. */
  recorded(r: { records: number; bytes: number }, warcsClosed: number): void {
    this.records += r.records;
    this.bytes += r.bytes;
    this.warcs = warcsClosed;
  }

  /** A media URL's fetch ended. */
  media(outcome: 'done' | 'failed' | 'skipped'): void {
    if (outcome === 'done') this.mediaDone++;
    else if (outcome === 'failed') this.mediaFailed++;
    else this.mediaSkipped++;
  }

  /** A capture's fetch failed for good (retries exhausted, refused by scope or robots). */
  fetchError(): void {
    this.errors++;
  }

  /** A host answered 429. */
  throttled(): void {
    this.throttles++;
  }

  /** A request is tried again. */
  retried(): void {
    this.retries++;
  }

  /** A final ID whose extraction was cut or failed. */
  extractionNote(): void {
    this.extractionNotes++;
  }

  snapshot(): Record<string, number> {
    const elapsedSecs = (Date.now() - this.started) / 1000;
    // A media item (no IDs, only URLs) is timed by its URLs.
    const byMedia = this.total === 0 && this.mediaTotal > 0;
    const [done, total] = byMedia ? [this.mediaDone + this.mediaFailed + this.mediaSkipped, this.mediaTotal] : [this.done, this.total];
    const rate = elapsedSecs > 0 ? this.done / elapsedSecs : 0;
    const unitRate = elapsedSecs > 0 ? done / elapsedSecs : 0;
    return {
      ...this.ids,
      done: this.done,
      total: this.total,
      records: this.records,
      bytes: this.bytes,
      warcs: this.warcs,
      throttles: this.throttles,
      retries: this.retries,
      errors: this.errors,
      media_done: this.mediaDone,
      media_failed: this.mediaFailed,
      media_skipped: this.mediaSkipped,
      media_total: this.mediaTotal,
      extraction_notes: this.extractionNotes,
      elapsed_secs: Math.round(elapsedSecs * 10) / 10,
      ids_per_sec: Math.round(rate * 10) / 10,
      mb_per_sec: Math.round((elapsedSecs > 0 ? this.bytes / 1e6 / elapsedSecs : 0) * 100) / 100,
      eta_secs: unitRate > 0 ? Math.round(Math.max(0, total - done) / unitRate) : -1,
      rss_mb: Math.round(process.memoryUsage.rss() / 1048576),
    };
  }
}

/**
 * The contract summary line (README "Commands"), saying whose numbers are whose: the ID counts are
 * the whole shard's (earlier runs included), the rest this run's.
 * `shard: archived A, missing M, gone G, restricted R, failed F; this run: ids D, records N, bytes B, warcs W`
 */
export function summaryLine(
  shard: { archived: number; missing: number; gone: number; restricted: number; failed: number },
  run: { ids: number; records: number; bytes: number; warcs: number },
): string {
  const ids = `archived ${shard.archived}, missing ${shard.missing}, gone ${shard.gone}, restricted ${shard.restricted}, failed ${shard.failed}`;
  return `shard: ${ids}; this run: ids ${run.ids}, records ${run.records}, bytes ${run.bytes}, warcs ${run.warcs}`;
}
