import { createHash } from 'node:crypto';
import { RangeSet } from '../config/id-ranges.js';

/**
 * Media URLs as project-wide work (issue 13). Nodes crawling post items report the media URLs
 * they extract; the tracker keeps one row per normalised URL (keyed by a hash of the project and
 * the URL), and hands never-seen URLs out again as **media items**: ordinary items whose ranges
 * are the URLs' serial numbers (`seq`), so leases, heartbeats, remainder handover, `done`
 * idempotence and stale-lease refusal are the ID items' own.
 *
 * Priorities (lower first): post items 0, then media items of images 1, other media 2, video 3.
 */

export const ITEM_KINDS = ['posts', 'media'] as const;
export type ItemKind = (typeof ITEM_KINDS)[number];

export const MEDIA_KINDS = ['image', 'other', 'video'] as const;
export type MediaKind = (typeof MEDIA_KINDS)[number];

export const POSTS_PRIORITY = 0;
export const MEDIA_PRIORITY: Record<MediaKind, number> = { image: 1, other: 2, video: 3 };

/** Default URLs per media item (a project's `media.item_size`). */
export const DEFAULT_MEDIA_ITEM_SIZE = 100;
/** Most URLs one report (one heartbeat) may carry; more is refused (400), not stored. */
export const MAX_REPORTED_URLS = 1000;
/** Longest reported URL, in characters. */
export const MAX_URL_CHARS = 2048;

const IMAGE_EXT = new Set(['jpg', 'jpeg', 'png', 'gif', 'webp', 'avif', 'svg', 'bmp', 'ico', 'heic', 'jxl', 'tif', 'tiff']);
const VIDEO_EXT = new Set(['mp4', 'webm', 'mov', 'm4v', 'm3u8', 'mpd', 'mkv', 'avi', 'ogv', 'ts', '3gp']);

/** A URL as reported by a node: normalised, with the kind it knows (a profile hint) or by extension. */
export interface ReportedMedia {
  url: string;
  kind?: MediaKind;
}

/** One URL of a leased media item. */
export interface MediaUrl {
  seq: number;
  url: string;
}

/**
 * The form a URL is deduplicated in: parsed and re-serialised by WHATWG URL (scheme and host in
 * lower case, default port dropped, percent-encoding normalised), without its fragment (never
 * sent to a server). The query is kept as it is: its order may matter to the platform.
 * Throws a TypeError for a string that is not an absolute URL.
 */
export function normaliseMediaUrl(raw: string): URL {
  const url = new URL(raw);
  url.hash = '';
  return url;
}

/** The media kind a URL's path extension says, or `other`. */
export function mediaKindOf(url: string): MediaKind {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return 'other';
  }
  const ext = /\.([a-z0-9]{1,5})$/i.exec(path)?.[1]?.toLowerCase();
  if (ext && IMAGE_EXT.has(ext)) return 'image';
  if (ext && VIDEO_EXT.has(ext)) return 'video';
  return 'other';
}

export function mediaPriority(m: ReportedMedia): number {
  return MEDIA_PRIORITY[m.kind ?? mediaKindOf(m.url)];
}

/** The table key: 16 bytes of sha256(project NUL url). 2^-128 collision odds per pair: none at 10^8 URLs. */
export function mediaUrlHash(project: string, url: string): Buffer {
  return createHash('sha256').update(project).update('\0').update(url).digest().subarray(0, 16);
}

/** A report deduplicated by URL (the first kind hint wins), in report order. */
export function uniqueMedia(media: readonly ReportedMedia[]): ReportedMedia[] {
  const seen = new Set<string>();
  const out: ReportedMedia[] = [];
  for (const m of media) {
    if (seen.has(m.url)) continue;
    seen.add(m.url);
    out.push(m);
  }
  return out;
}

/** The seqs of a media item as a range set (adjacent serials joined). */
export function seqRanges(seqs: readonly number[]): RangeSet {
  return new RangeSet(seqs.map((s) => ({ start: s, end: s })));
}

/** SQL for the rows of `ranges` (seq BETWEEN pairs), as `(seq BETWEEN ? AND ?) OR …` with its values. */
export function seqFilter(ranges: RangeSet, placeholder: (i: number) => string): { sql: string; values: number[] } {
  const parts: string[] = [];
  const values: number[] = [];
  for (const r of ranges.ranges) {
    parts.push(`(seq BETWEEN ${placeholder(values.length)} AND ${placeholder(values.length + 1)})`);
    values.push(r.start, r.end);
  }
  return { sql: parts.length > 0 ? parts.join(' OR ') : 'FALSE', values };
}
