import { createHash } from 'node:crypto';
import { InputError } from '../../config/errors.js';
import { RangeSet } from '../../config/id-ranges.js';
import { loadProfile } from '../../config/profile.js';
import { type MediaKind, mediaKindOf } from '../../config/media-kinds.js';

export { ITEM_KINDS, MEDIA_KINDS, type ItemKind, type MediaKind, mediaKindOf } from '../../config/media-kinds.js';
export type { MediaUrl } from '../client/api-types.js';

/**
 * Media URLs as project-wide work (issue 13). Nodes crawling post items report the media URLs
 * they extract; the tracker keeps one row per normalised URL (keyed by a hash of the project and
 * the URL), and hands never-seen URLs out again as **media items**: ordinary items whose ranges
 * are the URLs' serial numbers (`seq`), so leases, heartbeats, remainder handover, `done`
 * idempotence and stale-lease refusal are the ID items' own.
 *
 * Priorities (lower first): post items 0, then media items of images 1, other media 2, video 3.
 */

export const POSTS_PRIORITY = 0;
export const MEDIA_PRIORITY: Record<MediaKind, number> = { image: 1, other: 2, video: 3 };

/** Default URLs per media item (a project's `media.item_size`). */
export const DEFAULT_MEDIA_ITEM_SIZE = 100;
/** Most URLs one report (one heartbeat) may carry; more is refused (400), not stored. A report also has to fit the body limit (64 KiB by default: 413). */
export const MAX_REPORTED_URLS = 500;
/** Longest reported URL, in characters. */
export const MAX_URL_CHARS = 2048;

/** A URL as reported by a node: normalised, with the kind it knows (a profile hint) or by extension. */
export interface ReportedMedia {
  url: string;
  kind?: MediaKind;
}

/**
 * The form a URL is deduplicated in: parsed and re-serialised by WHATWG URL (scheme and host in
 * lower case, default port dropped, percent-encoding normalised), the host without trailing dots,
 * without its fragment (never sent to a server). The query is kept as it is: its order may matter to the platform.
 * Throws a TypeError for a string that is not an absolute URL.
 */
export function normaliseMediaUrl(raw: string): URL {
  const url = new URL(raw);
  url.hash = '';
  // `cdn.example.org.` is the same host as `cdn.example.org`: one form, so it is deduplicated as one.
  if (url.hostname.endsWith('.')) url.hostname = url.hostname.replace(/\.+$/, '');
  return url;
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

/**
 * Which hosts reported URLs may be on: `example.org` exactly, `*.example.org` any subdomain (as
 * the profile's scope.hosts). The tracker's check; every node checks again with its own guard.
 */
export class MediaScope {
  readonly #exact = new Set<string>();
  readonly #suffixes: string[] = [];
  /** The host entries as given: claims send them, so an honest node reports only what is taken. */
  readonly hosts: readonly string[];
  /** Ports a URL may name besides its scheme's default (issue 21 §2): not the tracker's, not :6379; `any` for the organiser's own lists. */
  readonly ports: ReadonlySet<number> | 'any';

  constructor(hosts: readonly string[], ports: readonly number[] | 'any' = []) {
    this.hosts = [...hosts];
    this.ports = ports === 'any' ? 'any' : new Set(ports);
    for (const entry of hosts) {
      const wildcard = entry.startsWith('*.');
      const host = hostOf(wildcard ? entry.slice(2) : entry);
      if (wildcard) this.#suffixes.push(`.${host}`);
      else this.#exact.add(host);
    }
  }

  allows(url: URL): boolean {
    const host = hostOf(url.hostname);
    return this.#exact.has(host) || this.#suffixes.some((s) => host.endsWith(s));
  }

  /**
   * A report as the store takes it: every URL absolute http(s), without credentials, on a scope
   * host, normalised. One bad URL refuses the whole report (an InputError naming it): nothing of
   * it is stored.
   */
  check(urls: readonly string[]): ReportedMedia[] {
    return this.checkReport(urls, { dropOffPort: false }).media;
  }

  /**
   * `check`, but with `dropOffPort` (a node's report) a URL naming a port the project does not
   * is left out and counted in `offPort` instead of refusing the report: an honest node whose
   * post links such a URL is not stopped, and nothing of it becomes work.
   */
  checkReport(urls: readonly string[], options: { dropOffPort: boolean } = { dropOffPort: true }): { media: ReportedMedia[]; offPort: number } {
    let offPort = 0;
    const media: ReportedMedia[] = [];
    if (urls.length > 0 && this.#exact.size === 0 && this.#suffixes.length === 0) {
      throw new InputError('this project has no media hosts (the tracker could not load its profile): the organisers should set media.hosts', { code: 'E_MEDIA_SCOPE' });
    }
    urls.forEach((raw, i) => {
      let url: URL;
      try {
        url = normaliseMediaUrl(raw);
      } catch {
        throw new InputError(`media[${i}]: not an absolute URL: ${raw.slice(0, 200)}`, { code: 'E_BAD_REQUEST' });
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InputError(`media[${i}]: only http(s) URLs are taken, not ${url.protocol} (${raw.slice(0, 200)})`, { code: 'E_BAD_REQUEST' });
      if (url.username || url.password) throw new InputError(`media[${i}]: a URL with credentials is refused (${url.host})`, { code: 'E_BAD_REQUEST' });
      if (!this.allows(url)) throw new InputError(`media[${i}]: host ${url.hostname} is not in this project's media hosts (${raw.slice(0, 200)})`, { code: 'E_MEDIA_SCOPE' });
      // WHATWG URL drops the scheme's default port: any port left must be one the project names.
      if (url.port !== '' && this.ports !== 'any' && !this.ports.has(Number(url.port))) {
        if (options.dropOffPort) {
          offPort++;
          return;
        }
        throw new InputError(`media[${i}]: port ${url.port} is not the scheme's default nor one this project names (media.ports) (${raw.slice(0, 200)})`, { code: 'E_MEDIA_SCOPE' });
      }
      if (url.href.length > MAX_URL_CHARS) throw new InputError(`media[${i}]: longer than ${MAX_URL_CHARS} characters once normalised`, { code: 'E_BAD_REQUEST' });
      media.push({ url: url.href });
    });
    return { media, offPort };
  }
}

function hostOf(host: string): string {
  let h = host.trim().toLowerCase().replace(/\.+$/, '');
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  try {
    const parsed = new URL(`http://${h.includes(':') ? `[${h}]` : h}/`).hostname;
    return parsed.startsWith('[') ? parsed.slice(1, -1) : parsed;
  } catch {
    return h;
  }
}

/**
 * Hosts reported media may be on: the project's media.hosts, else the scope hosts of its profile
 * (a built-in name or a path). A profile the tracker cannot load (a path only nodes have) gives
 * none: reports are then refused until the project lists media.hosts.
 */
export function mediaHostsOf(project: { profile: string; media: { hosts?: string[] | undefined } }): string[] {
  return mediaScopeOf(project).hosts;
}

/**
 * What the tracker checks reported media against, from the project and its profile (loaded with
 * `baseUrl` when the tracker was given one): the hosts (mediaHostsOf), the ports besides the
 * schemes' defaults (media.ports and the port of the profile's base_url), and the media a post
 * may have: media.max_per_post per capture of the profile (100 when the tracker cannot load it).
 */
export function mediaScopeOf(project: { profile: string; media: { hosts?: string[] | undefined; ports?: number[] | undefined } }, baseUrl?: string): { hosts: string[]; ports: number[]; maxPerPost: number } {
  let profile: ReturnType<typeof loadProfile> | undefined;
  try {
    profile = loadProfile(project.profile, baseUrl ? { baseUrl } : {});
  } catch {
    profile = undefined;
  }
  const basePort = profile ? new URL(profile.baseUrl).port : '';
  return {
    hosts: project.media.hosts ?? profile?.scopeHosts ?? [],
    ports: [...(project.media.ports ?? []), ...(basePort ? [Number(basePort)] : [])],
    // The extractor keeps media.max_per_post references per capture of a post.
    maxPerPost: profile ? profile.media.maxPerPost * Math.max(1, profile.captures.length) : 100,
  };
}

/** Entries a store's SeenUrls keeps by default: ~60 MB, the most recently reported URLs. */
export const DEFAULT_SEEN_CACHE = 500_000;

/**
 * The hashes of URLs this process knows are in the table, most recently met last, bounded: a
 * report's already-seen URLs (shared avatars above all) are turned away without a database round.
 * Exact, not a Bloom filter: a filter's false positive would drop a never-seen URL for good. A
 * hash is added only after the transaction that stored or met it committed, and rows are never
 * deleted, so a hit is always right; several tracker processes each keep their own.
 */
export class SeenUrls {
  readonly #keys = new Map<string, true>();
  readonly #max: number;

  constructor(max = DEFAULT_SEEN_CACHE) {
    this.#max = max;
  }

  has(hash: Buffer): boolean {
    const key = hash.toString('latin1');
    if (!this.#keys.has(key)) return false;
    this.#keys.delete(key);
    this.#keys.set(key, true);
    return true;
  }

  addAll(hashes: readonly Buffer[]): void {
    if (this.#max === 0) return;
    for (const hash of hashes) {
      const key = hash.toString('latin1');
      this.#keys.delete(key);
      this.#keys.set(key, true);
      if (this.#keys.size > this.#max) this.#keys.delete(this.#keys.keys().next().value!);
    }
  }
}

/**
 * A report split for the store: the URLs to take to the database (all with `requeue`, else those
 * SeenUrls does not know), with their hashes, and how many were turned away in memory.
 */
export function mediaToStore(project: string, media: readonly ReportedMedia[], seen: SeenUrls, requeue: boolean): { todo: ReportedMedia[]; hashes: Buffer[] } {
  const todo: ReportedMedia[] = [];
  const hashes: Buffer[] = [];
  for (const m of uniqueMedia(media)) {
    const hash = mediaUrlHash(project, m.url);
    if (!requeue && seen.has(hash)) continue;
    todo.push(m);
    hashes.push(hash);
  }
  return { todo, hashes };
}
