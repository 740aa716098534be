/**
 * A node's side of shared media (issue 13). A post item of a project that collects media leaves
 * the media it extracts queued in its shard (`inlineMedia` kinds aside) and reports them to the
 * tracker with its heartbeats: always before, or with, the IDs they came from, so the tracker
 * never counts a post finished whose media it does not know. A media item's URLs are checked
 * with this node's own scope guard and queued in the item's shard, where the crawl's media queue
 * fetches them as it fetches media left by an earlier run.
 */
import { join } from 'node:path';
import { ScopeError, errorMessage } from '../config/errors.js';
import { RangeSet } from '../config/id-ranges.js';
import type { Logger } from '../config/logger.js';
import { type MediaKind, mediaKindOf } from '../config/media-kinds.js';
import type { Profile } from '../config/profile.js';
import { ShardDb } from '../storage/shard/shard-db.js';
import { openForReading } from '../storage/shard/sqlite-read.js';
import type { MediaUrl } from '../tracker/client/api-types.js';
import type { TrackerClient } from '../tracker/client/client.js';
import { ScopeGuard } from '../crawler/fetch/scope-guard.js';
import { shardDbPath } from '../storage/shard/layout.js';

/** At most this many URLs, and about this many characters of them, per report (the tracker takes 500 in 64 KiB). */
const REPORT_URLS = 500;
const REPORT_CHARS = 48_000;
/** The tracker's longest URL (2048) less room for its normalisation. */
const MAX_REPORT_URL_CHARS = 2000;

/** Rows of the shard's URL table, read without changing it; none when there is no shard yet. */
function readUrls(dir: string, where: string): { url: string; state: string; reason: string | null; post_id: number | null }[] {
  let db;
  try {
    db = openForReading(shardDbPath(dir));
  } catch {
    return [];
  }
  try {
    return db.prepare(`SELECT url, state, COALESCE(last_error, 'HTTP ' || http_status) AS reason, post_id FROM urls WHERE ${where} ORDER BY rowid`).all() as {
      url: string;
      state: string;
      reason: string | null;
      post_id: number | null;
    }[];
  } catch {
    return []; // a shard created before it had a urls table: nothing queued
  } finally {
    db.close();
  }
}

/** Splits URLs into reports the tracker accepts. */
export function reportChunks(urls: readonly string[]): string[][] {
  const out: string[][] = [];
  let chunk: string[] = [];
  let chars = 0;
  for (const url of urls) {
    if (chunk.length > 0 && (chunk.length >= REPORT_URLS || chars + url.length + 3 > REPORT_CHARS)) {
      out.push(chunk);
      chunk = [];
      chars = 0;
    }
    chunk.push(url);
    chars += url.length + 3;
  }
  if (chunk.length > 0) out.push(chunk);
  return out;
}

/**
 * Reports a post item's queued media with its heartbeats. `acked` is the finished set the
 * tracker holds with all its media: what a release may name.
 */
export class MediaReporter {
  readonly #client: TrackerClient;
  readonly #leaseId: string;
  readonly #dir: string;
  readonly #inline: readonly MediaKind[];
  readonly #scope: ScopeGuard | undefined;
  readonly #reported = new Set<string>();
  #acked = new RangeSet();

  /**
   * `scope`: the project's media hosts as this node checks them. A URL off them (a profile that
   * extracts a link to another site) is not reported — the tracker would refuse the whole report,
   * and the item could never finish — but recorded `skipped` in the shard, saying why.
   */
  constructor(options: { client: TrackerClient; leaseId: string; dir: string; inline: readonly MediaKind[]; scope?: ScopeGuard }) {
    this.#client = options.client;
    this.#leaseId = options.leaseId;
    this.#dir = options.dir;
    this.#inline = options.inline;
    this.#scope = options.scope;
  }

  get acked(): RangeSet {
    return this.#acked;
  }

  /**
   * Sends every queued media URL not reported yet, then `finished`. The URLs are read after
   * `finished` was taken: an ID is final only with its media rows (one transaction), so all of
   * its media are among them. A URL is counted reported once a heartbeat carrying it succeeded.
   */
  async report(finished: RangeSet): Promise<void> {
    // Only media of posts in `finished` go now (the tracker takes media per ID reported finished:
    // media.max_per_post), each report naming the posts whose media have all been sent.
    const postOf = new Map<string, number | null>();
    for (const r of readUrls(this.#dir, `state = 'queued'`)) {
      if (this.#reported.has(r.url) || this.#inline.includes(mediaKindOf(r.url))) continue;
      if (r.post_id !== null && !finished.has(r.post_id)) continue;
      postOf.set(r.url, r.post_id);
    }
    const fresh = [...postOf.keys()];
    const refused = new Map<string, string>();
    for (const url of fresh) {
      try {
        if (url.length > MAX_REPORT_URL_CHARS) throw new ScopeError(`longer than ${MAX_REPORT_URL_CHARS} characters`);
        this.#scope?.checkUrl(url);
      } catch (err) {
        if (!(err instanceof ScopeError)) throw err;
        refused.set(url, errorMessage(err));
      }
    }
    if (refused.size > 0) this.#skip(refused);
    const chunks = reportChunks(fresh.filter((url) => !refused.has(url)));
    const lastChunk = new Map<number, number>();
    chunks.forEach((chunk, i) => chunk.forEach((url) => postOf.get(url) != null && lastChunk.set(postOf.get(url)!, i)));
    for (const [i, chunk] of chunks.entries()) {
      const later = [...lastChunk].filter(([, j]) => j > i).map(([post]) => ({ start: post, end: post }));
      const ids = i === chunks.length - 1 ? finished : this.#acked.union(finished.subtract(new RangeSet(later)));
      await this.#client.heartbeat(this.#leaseId, ids, chunk);
      for (const url of chunk) this.#reported.add(url);
      this.#acked = this.#acked.union(ids);
    }
    if (chunks.length === 0) await this.#client.heartbeat(this.#leaseId, finished);
    this.#acked = this.#acked.union(finished);
  }

  /** Marks URLs the tracker would not take as skipped in the shard (a short write beside the crawl's). */
  #skip(refused: Map<string, string>): void {
    const db = new ShardDb(join(this.#dir, 'shard.sqlite'));
    try {
      for (const [url, why] of refused) {
        db.setUrlState(url, 'skipped', { lastError: `not reported to the tracker: ${why}`.slice(0, 2000) });
        this.#reported.add(url);
      }
    } finally {
      db.close();
    }
  }
}

/**
 * Queues a media item's URLs in its shard, each checked against this node's scope (profile
 * hosts, schemes, credentials; addresses are checked again when connecting): a URL the tracker
 * should never have sent is recorded as skipped, never fetched. Returns how many were refused.
 */
export function queueMediaItem(options: { dir: string; urls: readonly MediaUrl[]; profile: Profile; allowPrivateNetwork: boolean; log: Logger }): number {
  const { dir, urls, profile, log } = options;
  const guard = new ScopeGuard({ hosts: profile.scopeHosts, allowPrivateNetwork: options.allowPrivateNetwork });
  const db = new ShardDb(shardDbPath(dir));
  let refused = 0;
  try {
    db.setMeta('profile', profile.name);
    for (const { url } of urls) {
      try {
        guard.checkUrl(url);
        db.queueUrl(url, null);
      } catch (err) {
        if (!(err instanceof ScopeError)) throw err;
        refused++;
        log.log('warn', `media item: refused ${url.slice(0, 200)}: ${errorMessage(err)}`);
        db.queueUrl(url, null);
        db.setUrlState(url, 'skipped', { lastError: `refused by this node's scope guard: ${errorMessage(err)}` });
      }
    }
  } finally {
    db.close();
  }
  return refused;
}

/** The seqs of a media item whose URL is final in the shard (fetched, or refused by scope). */
export function mediaFinished(dir: string, urls: readonly MediaUrl[]): RangeSet {
  const final = new Set(readUrls(dir, `state IN ('done', 'skipped')`).map((r) => r.url));
  return new RangeSet(urls.filter((u) => final.has(u.url)).map((u) => ({ start: u.seq, end: u.seq })));
}

/** Why each of a media item's URLs failed in the shard (seq → reason), for the tracker's per-URL attempts (issue 21 §2). */
export function mediaFailures(dir: string, urls: readonly MediaUrl[]): Map<number, string> {
  const why = new Map(readUrls(dir, `state = 'failed'`).map((r) => [r.url, r.reason ?? 'failed after all retries']));
  return new Map(urls.filter((u) => why.has(u.url)).map((u) => [u.seq, why.get(u.url)!]));
}

/** How a media item's URLs ended in the shard: done, failed (after all retries), skipped. */
export function mediaCounts(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of readUrls(dir, '1 = 1')) out[r.state] = (out[r.state] ?? 0) + 1;
  return out;
}
