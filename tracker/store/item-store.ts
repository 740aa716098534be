import type { RangeSet } from '../../config/id-ranges.js';
import type { AcceptedRange } from '../../config/live-edge.js';
import type { ItemKind, MediaUrl, ReportedMedia } from './media-urls.js';
import type { DoneStats } from '../client/api-types.js';
import type { DeadlineProjection, KindProgress } from './deadline.js';
import type { RecheckRequest, StorePolicy } from './rules.js';

/**
 * The tracker's durable state: items (ID ranges) and their leases, nodes, bans, settings and
 * recent progress events. Two implementations share one behaviour and one contract test suite:
 * `SqliteItemStore` (one tracker process) and `PostgresItemStore` (several processes, one DB).
 *
 * Every method that changes state is one atomic transition. Time is passed in (`now`, ms since
 * the epoch) so callers — the server's clock, or a test — decide what "expired" means.
 *
 * Item lifecycle: `queued` → claim → `claimed` (lease id + expiry) → done → `done`.
 * A claimed item whose lease expires, or that is released/failed, goes back to `queued`
 * keeping the sub-ranges its holders reported finished, so the next claim hands out only the
 * unfinished remainder. A store instance is bound to one project; one database may hold many.
 */

export const ITEM_STATES = ['queued', 'claimed', 'done'] as const;
export type ItemState = (typeof ITEM_STATES)[number];

export type { DoneStats, WarcReport } from '../client/api-types.js';

export interface NodeRecord {
  id: number;
  nick: string;
  banned: boolean;
}

export interface Lease {
  itemId: number;
  /** `posts`: a range of post IDs; `media`: a batch of media URLs whose seqs are `ranges`. */
  kind: ItemKind;
  /** The IDs still to do: the item's ranges minus the sub-ranges already reported finished. */
  ranges: RangeSet;
  /** Media items: the URLs still to do (one per seq of `ranges`). */
  urls?: MediaUrl[];
  leaseId: string;
  leaseExpiresAt: number;
}

/** What `lookupLease` finds. */
export interface LeaseLookup {
  itemId: number;
  state: 'live' | 'done';
}

/**
 * `lease`: work to do; `later`: everything is leased, ask again (`capped`: the node holds
 * `maxLeasesPerNode` live leases already); `done`: nothing left at all.
 * `expired` counts the overdue leases this claim returned to the queue first (for metrics).
 */
export type ClaimResult = (
  | { kind: 'lease'; lease: Lease }
  | { kind: 'later'; retryAfterMs: number; capped?: boolean }
  | { kind: 'done' }
) & { expired: number };

export interface NickStats {
  nick: string;
  items: number;
  ids: number;
  bytes: number;
  rateIdsPerSec: number;
  /** What the tracker refused this nick's nodes (issue 21 §3). */
  refused: Refusals;
}

/** Refusals (issue 21 §3): media URLs over a budget, claims over the lease cap, leases taken away for no progress. */
export interface Refusals {
  media: number;
  claims: number;
  stalledLeases: number;
}

export interface TrackerStats {
  project: string;
  items: Record<ItemState, number> & { total: number };
  ids: { total: number; done: number };
  /** Seconds until every ID is done at the current rate; 0 when done, null when nothing moves. */
  etaSecs: number | null;
  bytes: number;
  activeNodes: number;
  rateIdsPerSec: number;
  rateWindowSecs: number;
  nodes: NickStats[];
  /** The project's refusals, all nodes together. */
  refused: Refusals;
  /** Media URLs given up on after `media.max_attempts` (issue 21 §2). */
  mediaFailed: number;
  generatedAt: number;
  /** A project with a `deadline`: the countdown and the projected coverage per kind (issue 14). */
  deadline?: DeadlineProjection;
}

/** One bucket of the rate history. */
export interface RatePoint {
  /** Start of the bucket, ms since the epoch. */
  at: number;
  ids: number;
  bytes: number;
  idsPerSec: number;
  bytesPerSec: number;
}

export interface ClaimOptions {
  nodeId: number;
  now: number;
  leaseMs: number;
  /** Only this kind of item (`node --only`); default either, post items first. */
  only?: ItemKind;
  /** Within a priority: `oldest` (lowest item id first, the default) or `newest` (highest first; issue 14). */
  order?: 'newest' | 'oldest';
  /** URLs per media item cut from the pending media URLs; default DEFAULT_MEDIA_ITEM_SIZE. */
  mediaItemSize?: number;
}

export interface HeartbeatOptions {
  nodeId: number;
  leaseId: string;
  finished: RangeSet;
  now: number;
  leaseMs: number;
  /**
   * Media URLs the node extracted (normalised and scope-checked by the caller): stored in the same
   * transaction as `finished`, so a post counts as finished only with its media known.
   */
  media?: readonly ReportedMedia[];
  /** URLs of the report the caller left out (a port the project does not name): counted on the node as refused. */
  mediaRefusedBefore?: number;
}

export interface DoneOptions {
  nodeId: number;
  leaseId: string;
  stats: DoneStats;
  now: number;
  /**
   * IDs of the item near the live edge that answered `missing` (issue 21 §1): in the same
   * transaction they become a recheck item, claimable after the item's next recheck delay, unless
   * the item had `policy.attempts` rechecks already (then their `missing` is final).
   */
  recheck?: RecheckRequest;
}

export interface ReleaseOptions {
  nodeId: number;
  leaseId: string;
  /** Sub-ranges finished since the last heartbeat; they are kept, the rest goes back. */
  finished?: RangeSet;
  /** Set for `fail`: recorded on the item as its last error (and on a media item's unfinished URLs). */
  error?: string;
  /** A media item's `fail`: why each URL failed (seq → reason), recorded on the URL instead of `error`. */
  mediaErrors?: ReadonlyMap<number, string>;
  /**
   * A `fail`'s IDs that answered `missing` near the live edge (issue 21 §1): those of them the item
   * holds as finished after this report become a recheck item, in the same transaction, as a
   * `done`'s do. (The IDs that go back to the queue are asked again anyway.)
   */
  recheck?: RecheckRequest;
  now: number;
}

/** `mediaRefused`: never-seen URLs of the report over the item's or the node's budget, not stored (counted on the node). */
export interface HeartbeatResult {
  leaseExpiresAt: number;
  remaining: RangeSet;
  mediaQueued: number;
  mediaRefused: number;
}

export interface ItemStore {
  readonly kind: 'sqlite' | 'postgres';
  readonly project: string;
  /** The project's limits (rules.ts StorePolicy); unset keys keep their defaults. */
  setPolicy(policy: Partial<StorePolicy>): void;
  /** Creates the schema if needed (idempotent, safe with several processes). */
  init(): Promise<void>;
  /** Inserts one item per range set, in batches. Returns how many items and IDs were added. */
  seed(items: Iterable<RangeSet>): Promise<{ items: number; ids: number }>;
  /**
   * Adds the IDs of `ids` that no item of the project holds yet, packed into items of at most
   * `itemSize` (packItems); one transaction, serialised against other seeds of the project, so
   * seeding a range twice (or two seeds at once) never doubles it. `skipped`: IDs already there.
   */
  seedNew(ids: RangeSet, itemSize: number): Promise<SeedResult>;
  /**
   * Queues `ids` to be asked again whatever items hold them (`tracker seed --recheck missing`,
   * issue 21 §1): recheck items of at most `itemSize` IDs, which a node fetches afresh; the
   * project's totals do not count them twice.
   */
  seedRecheck(ids: RangeSet, itemSize: number): Promise<{ items: number; ids: number }>;
  /** Projects this database knows (with items, nodes or settings), sorted. */
  listProjects(): Promise<string[]>;
  /**
   * Stores a node; only the token's hash is kept. A nick has one owner per project: throws
   * `NickTakenError` when another node (another token) registered it, `BannedError` for a banned
   * nick. The same nick with the same token again returns the node stored before (a node that
   * crashed before saving the answer registers again); a token in use under another nick is an
   * `InputError`.
   */
  registerNode(options: { nick: string; tokenHash: string; now: number }): Promise<NodeRecord>;
  authenticate(tokenHash: string): Promise<NodeRecord | undefined>;
  /**
   * Expires overdue leases, then leases the queued item of highest priority to the node: post
   * items, then media items (images, other, video), lowest id first. When pending media URLs
   * come before every queued media item, a new media item is cut from them (up to
   * `mediaItemSize`, one kind) and leased. `later` while items that may still add work are leased.
   */
  claim(options: ClaimOptions): Promise<ClaimResult>;
  /** Records finished sub-ranges and extends the lease. Throws `LeaseError` if stale. */
  heartbeat(options: HeartbeatOptions): Promise<HeartbeatResult>;
  /**
   * Adds media URLs the project has not seen as pending media work (`tracker seed --media-from-file`).
   * With `requeue`, URLs already seen whose media item is done (a merge found them never archived)
   * are pending again too. Claims cut pending URLs into media items.
   */
  queueMedia(media: readonly ReportedMedia[], options?: { requeue?: boolean }): Promise<{ queued: number; known: number }>;
  /** Media URLs of the project: `urls` seen, `done` in finished media items, `pending` not yet in an item. */
  mediaCounts(): Promise<MediaCounts>;
  /**
   * The item a node's lease is on, changing nothing: `live` (claimed by `nodeId`, not expired)
   * or `done` (finished by `nodeId` with this lease). Throws `LeaseError` otherwise.
   */
  lookupLease(options: { nodeId: number; leaseId: string; now: number }): Promise<LeaseLookup>;
  /** Marks the item done. A repeated done with the same lease is a no-op (`duplicate: true`). */
  done(options: DoneOptions): Promise<{ duplicate: boolean }>;
  /** Returns the unfinished remainder to the queue (release, or fail with `error`). */
  release(options: ReleaseOptions): Promise<{ remaining: RangeSet }>;
  /**
   * Returns every overdue lease's remainder to the queue; gives the number of leases expired.
   * Also rolls progress events up into the rate history, then drops events older than
   * `EVENT_RETENTION_MS` and history older than HISTORY_RETENTION_MS (the server calls this on a timer).
   */
  expireLeases(now: number): Promise<number>;
  /**
   * Gives leases back the time the tracker was away: every lease still live at `since` (when
   * the tracker was last seen alive) is extended by `byMs`. Returns how many were extended.
   */
  extendLeases(options: { since: number; byMs: number }): Promise<number>;
  stats(options: { now: number; windowMs: number }): Promise<TrackerStats>;
  /**
   * Queued items of IDs (posts, and rechecks that are due) a claim could take at `now`: the
   * follower's low-water mark for cutting the frontier (media items and rechecks not yet due are
   * no work for a node asking for posts).
   */
  claimableIdItems(now: number): Promise<number>;
  /**
   * Work per kind (post IDs, image/other/video URLs, pending ones included), the units and bytes
   * of done items as the cost sample, and the bytes/s reported over `windowMs` (issue 14 deadline).
   */
  workProgress(options: { now: number; windowMs: number }): Promise<{ kinds: KindProgress[]; bytesPerSec: number }>;
  /**
   * IDs and bytes reported per HISTORY_BUCKET_MS over the last `sinceMs` (at most
   * HISTORY_RETENTION_MS), oldest first, every bucket present. `expireLeases` rolls progress
   * events up into these buckets, so the history outlives the events and stays bounded.
   */
  rateHistory(options: { now: number; sinceMs: number }): Promise<RatePoint[]>;
  ban(options: { nick: string; reason: string; now: number }): Promise<{ releasedItems: number }>;
  unban(nick: string): Promise<void>;
  /**
   * A follow's poll accepted `ids` at `at` (issue 21 §1: where their age is counted from); in the
   * same transaction, rows accepted at or before `forgetUpTo` are deleted (none of their IDs is young any more).
   */
  noteAccepted(options: { ids: RangeSet; at: number; forgetUpTo: number }): Promise<void>;
  /** The ranges a follow accepted after `since` (ms), with when. */
  acceptedSince(since: number): Promise<AcceptedRange[]>;
  getSetting(key: string): Promise<string | undefined>;
  setSetting(key: string, value: string): Promise<void>;
  close(): Promise<void>;
}

/** Media URLs of the project: `urls` seen, `done` archived by finished media items, `pending` not yet in an item, `failed` given up on. */
export interface MediaCounts {
  urls: number;
  done: number;
  pending: number;
  failed: number;
}

export interface SeedResult {
  items: number;
  ids: number;
  skipped: number;
}

export { heldIds, packItems, parseSeedRanges, parseStoredRanges, retryAfterMsFor, storedRanges } from './rules.js';
export { SCHEMA_VERSION } from './schema.js';

/** Progress events (for the live rate) are kept this long; a stats window must be shorter. */
export const EVENT_RETENTION_MS = 15 * 60_000;
