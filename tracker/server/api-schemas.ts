import { z } from 'zod';
import { ITEM_KINDS, MAX_REPORTED_URLS, MAX_URL_CHARS, MEDIA_KINDS } from '../store/media-urls.js';

/**
 * The tracker's JSON API, version 1: request bodies (validated, strict — unknown keys are 400),
 * response shapes, and the table of routes from which /openapi.json is built. Field names are
 * snake_case on the wire. Times are ISO 8601 strings; sizes are bytes.
 */

export const NICK_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/;
export const VERSION_HEADER = 'x-lifeboat-version';

const nick = z.string().regex(NICK_PATTERN, 'a nick is 1-32 letters, digits, "_", "." or "-"');
const leaseId = z.string().min(1).max(64);
const count = z.number().int().min(0);
const rangePair = z
  .tuple([count, count])
  .refine(([start, end]) => end >= start, 'a range is [start, end] with end ≥ start');
const rangeList = z.array(rangePair).max(10_000);
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 is 64 lower-case hex digits');

/**
 * Most bytes one item may report (1 TiB: a thousand IDs of 1 GiB videos each). A larger claim is
 * refused (400), so the leaderboard's totals stay exact: 2^53 bytes would need 8,192 items at
 * this maximum, and each node's total saturates at 2^53 − 1 in the store (issue 11 §5).
 */
export const MAX_ITEM_BYTES = 2 ** 40;
const itemBytes = count.max(MAX_ITEM_BYTES, `at most ${MAX_ITEM_BYTES} bytes (1 TiB) per item`);

/**
 * `token`: optional, chosen by the node (32 random bytes, base64url) and saved before it asks, so a
 * registration repeated after a crash is recognised as the same node rather than a nick takeover.
 */
export const registerBody = z.strictObject({ nick, token: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'a token is 32 random bytes in base64url (43 characters)').optional() });
export const claimBody = z.strictObject({ only: z.enum(ITEM_KINDS).optional().describe('only this kind of item (node --only); default post items first, then media') });
export const heartbeatBody = z.strictObject({
  lease_id: leaseId,
  finished: rangeList,
  media: z
    .array(z.string().min(1).max(MAX_URL_CHARS))
    .max(MAX_REPORTED_URLS)
    .optional()
    .describe('media URLs extracted from the posts in `finished` (and before): http(s) on the media hosts; stored with `finished` in one transaction, or the whole report is refused'),
});
export const doneBody = z.strictObject({
  lease_id: leaseId,
  stats: z.strictObject({
    counts: z.strictObject({ archived: count, missing: count, gone: count, restricted: count, failed: count }),
    bytes: itemBytes,
    warcs: z
      .array(z.strictObject({ name: z.string().min(1).max(255), size: itemBytes, sha256 }))
      .max(10_000),
  }),
  missing: rangeList
    .optional()
    .describe('IDs of the item that answered missing (issue 21): those near the live edge of a followed project are asked again later, a few times, before missing is final'),
});
/** Files a node may upload through the tracker: its closed WARCs and its shard manifest. */
export const UPLOAD_NAME_PATTERN = /^(?:[A-Za-z0-9._-]+\.warc\.gz|shard\.json)$/;
/** S3's limit for one PUT; WARCs roll at ~1 GiB, far below it. */
export const MAX_UPLOAD_BYTES = 5 * 1024 ** 3;
export const uploadName = z
  .string()
  .max(255)
  .regex(UPLOAD_NAME_PATTERN, 'a file is NAME.warc.gz (letters, digits, ".", "_", "-"; no "/") or shard.json')
  .refine((n) => !n.includes('..'), 'a file name may not contain ".."');
export const uploadUrlsBody = z.strictObject({
  lease_id: leaseId,
  files: z
    .array(z.strictObject({ name: uploadName, size: count.max(MAX_UPLOAD_BYTES, 'larger than one S3 PUT (5 GiB)'), sha256 }))
    .min(1)
    .max(1000)
    .refine((files) => new Set(files.map((f) => f.name)).size === files.length, 'each file name once'),
});
export const releaseBody = z.strictObject({ lease_id: leaseId, finished: rangeList.optional() });
export const failBody = z.strictObject({
  lease_id: leaseId,
  finished: rangeList.optional(),
  error: z.string().min(1).max(2000),
  media_errors: z
    .array(z.tuple([z.number().int().min(1), z.string().min(1).max(500)]))
    .max(10_000)
    .optional()
    .describe('a media item: why each URL left failed, as [seq, reason] (recorded on the URL; each counts one attempt)'),
  missing: rangeList
    .optional()
    .describe('IDs of the item that answered missing (issue 21), as with done: those of `finished` near the live edge of a followed project are asked again later'),
});
export const seedBody = z.strictObject({
  ranges: z.string().min(1).describe('ID ranges in the integer codec: "1-1000,5000-6000" or a missing-ranges.txt'),
  item_size: z.number().int().min(1).optional(),
});
export const banBody = z.strictObject({ nick, reason: z.string().max(500).optional() });
export const unbanBody = z.strictObject({ nick });
export const minVersionBody = z.strictObject({ version: z.string().regex(/^\d+\.\d+\.\d+$/) });
export const emptyBody = z.strictObject({});

const errorResponse = z.object({ error: z.string(), message: z.string() });
const registerResponse = z.object({ node_id: z.number(), nick: z.string(), token: z.string() });
const claimResponse = z.union([
  z.object({
    item: z.object({
      id: z.number(),
      kind: z.enum(ITEM_KINDS),
      ranges: rangeList.describe('post IDs, or for a media item the serial numbers of its URLs'),
      urls: z.array(z.tuple([count, z.string()])).optional().describe('media items: [seq, url] still to fetch'),
      lease_id: z.string(),
      lease_expires_at: z.string(),
    }),
    profile: z.string(),
    media: z
      .object({ collect: z.boolean(), inline: z.array(z.enum(MEDIA_KINDS)), hosts: z.array(z.string()) })
      .describe('collect: report media URLs in heartbeats instead of fetching them, except the inline kinds; only URLs on `hosts` are taken'),
    lease_secs: z.number(),
    upload: z.union([z.null(), z.object({ mode: z.literal('s3-presigned') })]),
  }),
  z.object({ item: z.null(), retry_after_secs: z.number() }),
  z.object({ item: z.null(), done: z.literal(true) }),
]);
const heartbeatResponse = z.object({
  lease_expires_at: z.string(),
  remaining: rangeList,
  media_queued: count.describe('reported URLs the project had not seen'),
  media_refused: count.describe('reported URLs left out: a port the project does not name, or over the media.max_per_post budget per finished ID or the node\'s hourly quota'),
});
const uploadUrlsResponse = z.object({
  urls: z.array(
    z.object({
      name: z.string(),
      key: z.string(),
      url: z.string(),
      method: z.literal('PUT'),
      headers: z.record(z.string(), z.string()).describe('send exactly these headers (they are signed), plus content-length'),
      expires_at: z.string(),
    }),
  ),
});
const doneResponse = z.object({ ok: z.literal(true), duplicate: z.boolean() });
const releaseResponse = z.object({ ok: z.literal(true), remaining: rangeList });
const refusals = z.object({ media: count, claims: count, stalled_leases: count });
export const statsResponse = z.object({
  project: z.string(),
  items: z.object({ total: count, queued: count, claimed: count, done: count }),
  ids: z.object({ total: count, done: count }),
  progress: z.number(),
  eta_secs: count.nullable().describe('seconds until every ID is done at the current rate; 0 when done, null when nothing moves'),
  bytes: count,
  active_nodes: count,
  rate_ids_per_sec: z.number(),
  rate_window_secs: z.number(),
  nodes: z.array(z.object({ nick: z.string(), items: count, ids: count, bytes: count, rate_ids_per_sec: z.number(), refused: refusals })),
  refused: refusals.describe('what the tracker refused, all nodes (issue 21): media URLs left out, claims over nodes.max_leases, leases taken away after nodes.stall_secs without progress'),
  media_failed: count.describe('media URLs given up on after media.max_attempts (their reasons: a merge lists them in missing-media.txt)'),
  generated_at: z.string(),
  deadline: z
    .object({
      at: z.string(),
      seconds_left: count,
      bytes_per_sec: count,
      fits: z.boolean().describe('every known post ID and media URL is projected done by the deadline'),
      kinds: z.array(
        z.object({
          kind: z.enum(['posts', 'image', 'other', 'video']),
          units: count,
          expected_units: count.describe('units expected by the end: media URLs known so far scaled by all posts over the posts finished'),
          finished: count,
          projected: count.describe('units projected finished at the deadline, spending the live byte rate on kinds in claim order'),
          coverage: z.number(),
          bytes_per_unit: count.nullable(),
        }),
      ),
    })
    .optional()
    .describe('only for a project with a deadline (issue 14)'),
  follow: z
    .object({
      highest: count.describe('the highest platform ID accepted (a jump far above the trend counts only once a later poll confirms it)'),
      held: count.nullable().describe('a jump seen once and waiting for a confirming poll'),
      frontier_ids: count.describe('IDs accepted but not yet cut into items (cut in bounded chunks as work is claimed)'),
    })
    .optional()
    .describe('only for a project with follow (issue 21)'),
});
export const historyQuery = z.strictObject({ hours: z.coerce.number().int().min(1).max(48).default(24) });
export const historyResponse = z.object({
  bucket_secs: count,
  points: z.array(z.object({ at: z.string(), ids: count, bytes: count, ids_per_sec: z.number(), bytes_per_sec: z.number() })),
});
const projectResponse = z.object({ name: z.string(), profile: z.string(), item_size: z.number(), lease_secs: z.number(), min_client_version: z.string() });

export type RouteAuth = 'node' | 'admin' | 'version' | 'none';

export interface RouteSpec {
  method: 'GET' | 'POST';
  path: string;
  summary: string;
  /** `node`: version header + node token; `version`: version header only; `admin`: admin token. */
  auth: RouteAuth;
  body?: z.ZodType;
  response?: z.ZodType;
  contentType?: string;
}

export const ROUTES: readonly RouteSpec[] = [
  { method: 'POST', path: '/api/v1/register', summary: 'Register a node under a nick; returns its token (shown once)', auth: 'version', body: registerBody, response: registerResponse },
  { method: 'POST', path: '/api/v1/claim', summary: 'Lease the next item (or: come back later / nothing left)', auth: 'node', body: claimBody, response: claimResponse },
  { method: 'POST', path: '/api/v1/heartbeat', summary: 'Report finished sub-ranges and extend the lease', auth: 'node', body: heartbeatBody, response: heartbeatResponse },
  { method: 'POST', path: '/api/v1/upload-urls', summary: 'Pre-signed PUT URLs for the WARCs and shard.json of a leased item (projects with upload)', auth: 'node', body: uploadUrlsBody, response: uploadUrlsResponse },
  { method: 'POST', path: '/api/v1/done', summary: 'Finish an item with its stats (idempotent per lease; with upload, only once its WARCs are in the bucket)', auth: 'node', body: doneBody, response: doneResponse },
  { method: 'POST', path: '/api/v1/release', summary: 'Give an item back; its unfinished remainder is queued again', auth: 'node', body: releaseBody, response: releaseResponse },
  { method: 'POST', path: '/api/v1/fail', summary: 'Give an item back with an error; its unfinished remainder is queued again', auth: 'node', body: failBody, response: releaseResponse },
  { method: 'GET', path: '/api/v1/stats', summary: 'Project and per-nick statistics (the leaderboard data)', auth: 'none', response: statsResponse },
  { method: 'GET', path: '/api/v1/stats/history', summary: 'IDs and bytes finished per 5-minute bucket over the last ?hours=1..48 (default 24): the leaderboard chart', auth: 'none', response: historyResponse },
  { method: 'GET', path: '/api/v1/project', summary: 'The project settings nodes need', auth: 'none', response: projectResponse },
  { method: 'POST', path: '/api/v1/admin/seed', summary: 'Add ID ranges as items', auth: 'admin', body: seedBody, response: z.object({ items: count, ids: count, skipped: count }) },
  { method: 'POST', path: '/api/v1/admin/ban', summary: 'Ban a nick; its leases are returned to the queue', auth: 'admin', body: banBody, response: z.object({ ok: z.literal(true), released_items: count }) },
  { method: 'POST', path: '/api/v1/admin/unban', summary: 'Lift a ban', auth: 'admin', body: unbanBody, response: z.object({ ok: z.literal(true) }) },
  { method: 'POST', path: '/api/v1/admin/min-version', summary: 'Raise the minimum client version', auth: 'admin', body: minVersionBody, response: z.object({ ok: z.literal(true), min_client_version: z.string() }) },
  { method: 'POST', path: '/api/v1/admin/expire', summary: 'Expire overdue leases now', auth: 'admin', body: emptyBody, response: z.object({ expired: count }) },
  { method: 'GET', path: '/openapi.json', summary: 'This description', auth: 'none', contentType: 'application/json' },
  { method: 'GET', path: '/', summary: 'The leaderboard page', auth: 'none', contentType: 'text/html' },
  { method: 'GET', path: '/metrics', summary: 'Prometheus metrics', auth: 'none', contentType: 'text/plain' },
];

export { errorResponse };
