import type { IdCodec } from '../../config/id-codec.js';
import { InputError, LifeboatError, StorageError } from '../../config/errors.js';
import { RangeSet, parseRanges } from '../../config/id-ranges.js';
import { BannedError, LeaseError, NickTakenError } from '../client/errors.js';
import { type ItemKind, type MediaUrl, MAX_REPORTED_URLS } from './media-urls.js';
import { recheckDelayMs, type RecheckOptions } from '../../config/live-edge.js';

/**
 * The tracker's rules, once, for both stores: what a live lease is, how reported sub-ranges
 * change an item, who may register a nick, what a claim hands out or answers when there is
 * nothing, and how a driver error reaches the caller. Pure functions over the rows the stores
 * read; the stores (sqlite-store.ts, postgres-store.ts) only run SQL and transactions around them.
 */

/** The columns of an item both stores read to judge a lease. */
export interface LeaseRow {
  id: number;
  node_id: number | null;
  state: string;
  lease_expires_at: number | null;
  ranges: string;
  finished: string;
  finished_count: number;
  id_count: number;
  kind: string;
  /** How many rechecks the item's IDs have had (a `recheck` item; 0 otherwise). */
  rechecks: number;
}

/** The columns read when an item is handed out. */
export interface ClaimedRow {
  id: number;
  ranges: string;
  finished: string;
  kind: string;
}

/** `row` if it is the live lease `leaseId` of `nodeId` at `now`; otherwise a `LeaseError` saying why not. */
export function checkLive(row: LeaseRow | undefined, leaseId: string, nodeId: number, now: number): LeaseRow {
  if (!row || row.state !== 'claimed') throw new LeaseError(`lease ${leaseId} is not active (expired, finished or superseded)`);
  if (Number(row.node_id) !== nodeId) throw new LeaseError(`lease ${leaseId} belongs to another node`, { code: 'E_LEASE_NOT_YOURS' });
  if (Number(row.lease_expires_at ?? 0) < now) throw new LeaseError(`lease ${leaseId} expired; claim again`);
  return row;
}

/** A repeated `done` with the same lease: the item is done and was finished by this node. */
export function isRepeatedDone(row: LeaseRow | undefined, nodeId: number): boolean {
  return row?.state === 'done' && Number(row.node_id) === nodeId;
}

/**
 * An item after a report of finished sub-ranges: `after` (stored as `finished`), the IDs newly
 * credited to the node (`added`; media seqs are not post IDs and count 0), and what is left.
 */
export function applyFinished(row: Pick<LeaseRow, 'ranges' | 'finished' | 'kind'>, finished: RangeSet): { after: RangeSet; added: number; remaining: RangeSet } {
  const all = parseStoredRanges(row.ranges);
  const before = parseStoredRanges(row.finished);
  const after = before.union(finished.intersect(all));
  return { after, added: row.kind === 'posts' ? after.size - before.size : 0, remaining: all.subtract(after) };
}

/** Post IDs a `done` credits: the item's IDs not credited by heartbeats before (0 for media items). */
export function doneCredit(row: Pick<LeaseRow, 'kind' | 'id_count' | 'finished_count'>): number {
  return row.kind === 'posts' ? Number(row.id_count) - Number(row.finished_count) : 0;
}

/** What a registration finds for a nick and a token before it decides. */
export interface RegistrationSeen {
  banned: boolean;
  /** The nick's node (the first registered), if any. */
  owner?: { id: number; tokenHash: string } | undefined;
  /** The token is registered under some node of the project. */
  tokenUsed: boolean;
}

/**
 * One owner per nick (issue 11 §5): bans and stats by nick then hit exactly one node. The same
 * nick with the same token again is the node stored before (`existing`); otherwise a new node,
 * unless the nick is banned, owned by another token, or the token serves another nick.
 */
export function registrationDecision(seen: RegistrationSeen, nick: string, tokenHash: string): { existing: number } | { insert: true } {
  if (seen.banned) throw new BannedError(nick);
  if (seen.owner && seen.owner.tokenHash === tokenHash) return { existing: Number(seen.owner.id) };
  if (seen.owner) throw new NickTakenError(nick);
  if (seen.tokenUsed) throw new InputError('this token is registered under another nick; let the node choose a fresh one', { code: 'E_TOKEN_TAKEN' });
  return { insert: true };
}

/** The item priorities a claim may take: posts 0, media 1..99 (`node --only`). */
export function claimPriorities(only: ItemKind | undefined): { lo: number; hi: number } {
  return only === 'posts' ? { lo: 0, hi: 0 } : only === 'media' ? { lo: 1, hi: 99 } : { lo: 0, hi: 99 };
}

/**
 * Pending media URLs are cut into a new item when their kind comes before the first queued
 * item's, or is the same and that item failed before (an item put back by `fail` goes behind
 * the work of its kind that has not failed: one that keeps failing never blocks the rest).
 */
export function cutPendingFirst(pending: number | null | undefined, queued: { priority: number; failures: number } | null | undefined): pending is number {
  if (pending === null || pending === undefined) return false;
  if (!queued) return true;
  return pending < Number(queued.priority) || (pending === Number(queued.priority) && Number(queued.failures) > 0);
}

/**
 * The project's limits the stores enforce (issue 21 §2, §3); the project file sets them
 * (tracker/store/project.ts `policyOf`), these are the defaults.
 */
export interface StorePolicy {
  /** Times a media URL may be put back unfinished (a failed or expired media item) before it is `failed`. */
  mediaMaxAttempts: number;
  /** Live leases one node may hold at once (not per address: volunteers share NATs). */
  maxLeasesPerNode: number;
  /** A lease whose holder reports no progress this long is handed to others. */
  stallMs: number;
  /** Never-seen media URLs an item may add per ID reported finished (the profile's media.max_per_post per capture). */
  mediaPerId: number;
  /** Never-seen media URLs one node may add per hour. */
  mediaPerNodeHour: number;
}

/** No limit: a store enforces nothing until it is given the project's policy (the tracker always does: project.ts `policyOf`). */
const NONE = Number.MAX_SAFE_INTEGER;
export const NO_LIMITS: StorePolicy = { mediaMaxAttempts: NONE, maxLeasesPerNode: NONE, stallMs: NONE, mediaPerId: NONE, mediaPerNodeHour: NONE };

export const MEDIA_WINDOW_MS = 3600_000;

/**
 * How many never-seen media URLs a report may add: within the item's budget (`mediaPerId` per ID
 * finished once the report is taken, plus one report's worth — a post's media may span two
 * reports, the ID going with the second — less what the item added before) and the node's hourly quota.
 * `window` is the node's quota window after the report's time (a new one when the hour is over).
 */
export function mediaRoom(o: { policy: StorePolicy; itemReported: number; finishedAfter: number; windowAt: number; windowCount: number; now: number }): { room: number; windowAt: number; windowCount: number } {
  const fresh = o.now - Number(o.windowAt) >= MEDIA_WINDOW_MS;
  const windowAt = fresh ? o.now : Number(o.windowAt);
  const windowCount = fresh ? 0 : Number(o.windowCount);
  const byItem = Math.min(NONE, o.policy.mediaPerId * o.finishedAfter + MAX_REPORTED_URLS) - Number(o.itemReported);
  const byNode = o.policy.mediaPerNodeHour - windowCount;
  return { room: Math.max(0, Math.min(byItem, byNode)), windowAt, windowCount };
}

/** The numbers of a range set, one by one (a media item's seqs: at most `media.item_size`). */
export function* seqsOf(set: RangeSet): Generator<number> {
  for (const r of set.ranges) for (let n = r.start; n <= r.end; n++) yield n;
}

/** A media URL put back unfinished `attempts` times is given up on. */
export function mediaGivenUp(attempts: number, policy: StorePolicy): boolean {
  return Number(attempts) >= policy.mediaMaxAttempts;
}

/** The reason recorded on the URLs of a media item whose lease ran out without a report. */
export const EXPIRED_REASON = 'the lease ran out before the URL was fetched (the node stopped, hung or was too slow)';

/**
 * The stall bar (issue 21 §3). When the expire pass takes a lease because its holder reported no
 * progress for `nodes.stall_secs`, it marks the item with that node (`items.stalled_by`, and
 * `stalled_at`, the take-back). A claim of that node skips the item while any other work it asked
 * for is claimable. When that item is all that is left for it, the bar holds `nodes.stall_secs`
 * after the take-back — as long as the node had to show progress — and then lifts: by then every
 * other node asking for work was offered the item first (an idle honest node asks at least every
 * minute), so a hoarder gets back only what nobody else wants, and a node that was merely slow (one
 * huge medium, or the only volunteer left) is not starved for ever. The mark is the last
 * staller's: the next stall replaces it; a lease that ran out, a release, a fail or another
 * node's lease leaves it (another holder does not make the staller any faster).
 * Items marked `stalled_by` the node are claimable for it when `stalled_at` <= this.
 */
export function stallBarBefore(now: number, policy: Pick<StorePolicy, 'stallMs'>): number {
  return now - policy.stallMs;
}

/**
 * A claim that found nothing to hand out: `later` while leased items (of the kinds asked for)
 * may still add work or come back, or an item is barred for this node until `barredSince` plus
 * `stallMs` (rules.ts `stallBarBefore`), and a media-only node waits while post items (which
 * report media) are queued; otherwise `done`.
 */
export function nothingToClaim(o: { earliestExpiry: number | null | undefined; postsQueued: boolean; only: ItemKind | undefined; now: number; barredSince?: number | null | undefined; stallMs?: number }): { kind: 'later'; retryAfterMs: number } | { kind: 'done' } {
  const lifts = o.barredSince !== null && o.barredSince !== undefined ? Number(o.barredSince) + (o.stallMs ?? 0) : undefined;
  const expiry = o.earliestExpiry !== null && o.earliestExpiry !== undefined ? Number(o.earliestExpiry) : undefined;
  const next = lifts === undefined ? expiry : expiry === undefined ? lifts : Math.min(lifts, expiry);
  if (next !== undefined) return { kind: 'later', retryAfterMs: retryAfterMsFor(next, o.now) };
  if (o.only === 'media' && o.postsQueued) return { kind: 'later', retryAfterMs: 60_000 };
  return { kind: 'done' };
}

/** The IDs (or media seqs) of an item still to do: its ranges minus those reported finished. */
export function remainderOf(row: Pick<ClaimedRow, 'ranges' | 'finished'>): RangeSet {
  return parseStoredRanges(row.ranges).subtract(parseStoredRanges(row.finished));
}

/** The lease a claim hands out: the item's unfinished remainder and, for a media item, its URLs (`urls`, read for that remainder). */
export function leaseOf(row: ClaimedRow, leaseId: string, leaseExpiresAt: number, urls: MediaUrl[] | undefined) {
  const kind: ItemKind = row.kind === 'media' ? 'media' : 'posts';
  return { itemId: Number(row.id), kind, ranges: remainderOf(row), leaseId, leaseExpiresAt, ...(kind === 'media' ? { urls: urls ?? [] } : {}) };
}

/**
 * A driver's error as both stores throw it: the tracker's own errors (lease, ban, nick, input,
 * storage) pass as they are; anything else (SQLITE_*, a PostgreSQL error, a dropped connection)
 * becomes one `StorageError` naming the tracker database, the original kept as its cause.
 */
export function storeError(err: unknown, what = 'tracker database'): LifeboatError {
  if (err instanceof LifeboatError) return err;
  return new StorageError(`${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/**
 * A `done` or `fail` that names IDs that answered `missing` near the live edge (issue 21 §1): the
 * recheck item to add (`kind = 'recheck'`, claimed no earlier than `notBefore`), or undefined when
 * the item had every recheck already (their `missing` is final) or there is nothing to ask again.
 * Only IDs the item holds as final are asked again (`final`: all of it for a `done`, what is
 * finished after the report for a `fail`; the rest goes back to the queue anyway).
 */
export function recheckItemOf(row: Pick<LeaseRow, 'rechecks'>, final: RangeSet, recheck: RecheckRequest | undefined, now: number): { ranges: RangeSet; notBefore: number; rechecks: number } | undefined {
  if (!recheck) return undefined;
  const ids = recheck.ids.intersect(final);
  const attempt = Number(row.rechecks ?? 0);
  const delay = recheckDelayMs(attempt, recheck.policy);
  if (ids.isEmpty || delay === undefined) return undefined;
  return { ranges: ids, notBefore: now + delay, rechecks: attempt + 1 };
}

/** IDs that answered `missing` to ask again, with the project's rechecks (a `done` or `fail` carries it; issue 21 §1). */
export interface RecheckRequest {
  ids: RangeSet;
  policy: Pick<RecheckOptions, 'attempts' | 'delayMs'>;
}

/** When nothing is queued: how long a node should wait before asking again. */
export function retryAfterMsFor(earliestExpiry: number, now: number): number {
  return Math.min(60_000, Math.max(1_000, earliestExpiry - now));
}

/**
 * The IDs held by a project's items, from their stored `ranges` texts. Items are mostly seeded in
 * order, so adjacent ranges are joined as they stream in: a million contiguous items cost one range.
 */
export function heldIds(storedTexts: Iterable<string>): RangeSet {
  const out: { start: number; end: number }[] = [];
  for (const text of storedTexts) {
    for (const [start, end] of JSON.parse(text) as [number, number][]) {
      const last = out[out.length - 1];
      if (last && start === last.end + 1) last.end = end;
      else out.push({ start, end });
    }
  }
  return new RangeSet(out);
}

/**
 * Packs a set of IDs into items of at most `itemSize` IDs. Whole ranges are cut into chunks;
 * small fragments (as in a merge's missing-ranges.txt) are gathered into one item until it is
 * full, so re-seeding a scattered remainder does not create millions of one-ID items.
 */
export function* packItems(ids: RangeSet, itemSize: number): Generator<RangeSet> {
  let pending: { start: number; end: number }[] = [];
  let pendingSize = 0;
  for (const range of ids.ranges) {
    let start = range.start;
    while (start <= range.end) {
      const take = Math.min(range.end - start + 1, itemSize - pendingSize);
      pending.push({ start, end: start + take - 1 });
      pendingSize += take;
      start += take;
      if (pendingSize === itemSize) {
        yield new RangeSet(pending);
        pending = [];
        pendingSize = 0;
      }
    }
  }
  if (pendingSize > 0) yield new RangeSet(pending);
}

/**
 * Reads IDs to seed: `1-1000,5000-6000`, or a merge's missing-ranges.txt (one range per line);
 * `#` starts a comment that runs to the end of the line.
 */
export function parseSeedRanges(text: string, codec: IdCodec): RangeSet {
  return parseRanges(text.replace(/#.*$/gm, ''), codec);
}

/** Serialises a range set for a TEXT column; `parseStoredRanges` reverses it. */
export function storedRanges(set: RangeSet): string {
  return JSON.stringify(set.toJSON());
}

export function parseStoredRanges(text: string): RangeSet {
  return RangeSet.fromJSON(JSON.parse(text));
}
