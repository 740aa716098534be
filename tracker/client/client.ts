import { setTimeout as delay } from 'node:timers/promises';
import { type Dispatcher, request } from 'undici';
import { RangeSet } from '../../config/id-ranges.js';
import { RetryableFetchError } from '../../config/errors.js';
import { isRetryableStatus, parseRetryAfter, retrying } from '../../config/retry.js';
import { TrackerRequestError, TrackerUnavailableError } from './errors.js';
import { type ItemKind, type MediaKind, MEDIA_KINDS } from '../../config/media-kinds.js';
import type { DoneStats, MediaUrl } from './api-types.js';

export interface TrackerClientOptions {
  /** The tracker's base URL, e.g. `http://127.0.0.1:8070`. */
  baseUrl: string;
  /** This lifeboat's version, sent as X-Lifeboat-Version on every request. */
  clientVersion: string;
  /** A node token from an earlier `register` (kept in the node's shard). */
  token?: string;
  /** Retries when the tracker is unreachable, answers 5xx or 429. Delays double from `baseDelayMs`. */
  retry?: { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Per-request timeout; default 30 000 ms. */
  requestTimeoutMs?: number;
  /** Injectable for tests; default a real timer that honours the signal. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** undici dispatcher (an Agent or a mock); default undici's global dispatcher. */
  dispatcher?: Dispatcher;
  /** Told of each failed attempt before the wait for the next one (the node prints it). */
  onRetry?: (retry: TrackerRetry) => void;
}

/** A request to the tracker that failed for a passing reason and will be tried again. */
export interface TrackerRetry {
  path: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  maxAttempts: number;
  /** How long until the next attempt. */
  waitMs: number;
  problem: string;
}

export interface TrackerItem {
  id: number;
  /** `posts`: crawl the IDs in `ranges`; `media`: fetch `urls` (their seqs are `ranges`). */
  kind: ItemKind;
  ranges: RangeSet;
  /** Media items: the URLs still to fetch, each with its seq. */
  urls?: MediaUrl[];
  /** The project's media settings: report media instead of fetching them (except `inline` kinds), those on `hosts` (absent from older trackers). */
  media: { collect: boolean; inline: MediaKind[]; hosts?: string[] };
  leaseId: string;
  leaseExpiresAt: Date;
  leaseSecs: number;
  profile: string;
  /** How the tracker wants the item's WARCs: `s3-presigned` (ask `uploadUrls`, PUT, then done) or null (keep them). */
  upload: TrackerUpload | null;
}

export interface TrackerUpload {
  mode: 's3-presigned';
}

/** One pre-signed PUT from `uploadUrls`: send the file to `url` with exactly `headers` (plus content-length). */
export interface UploadUrl {
  name: string;
  key: string;
  url: string;
  method: 'PUT';
  headers: Record<string, string>;
  expiresAt: Date;
}

export type ClaimAnswer = { kind: 'item'; item: TrackerItem } | { kind: 'later'; retryAfterSecs: number } | { kind: 'done' };


interface WireItem {
  item: { id: number; kind?: string; ranges: [number, number][]; urls?: [number, string][]; lease_id: string; lease_expires_at: string } | null;
  media?: { collect?: boolean; inline?: string[]; hosts?: unknown };
  profile?: string;
  lease_secs?: number;
  retry_after_secs?: number;
  done?: boolean;
  upload?: { mode: string } | null;
}

/**
 * The node's side of the tracker API. Transient trouble (connection refused, timeouts, 5xx,
 * 429) is retried with exponential backoff; a 4xx answer becomes a `TrackerRequestError`
 * carrying the tracker's code and message (409 stale lease → policy give-up; others stop).
 */
export class TrackerClient {
  #baseUrl: string;
  #version: string;
  #token: string | undefined;
  #maxAttempts: number;
  #baseDelayMs: number;
  #maxDelayMs: number;
  #timeoutMs: number;
  #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  #dispatcher: Dispatcher | undefined;
  #onRetry: ((retry: TrackerRetry) => void) | undefined;

  constructor(options: TrackerClientOptions) {
    const { baseUrl, clientVersion, token, retry = {}, requestTimeoutMs = 30_000, sleep, dispatcher, onRetry } = options;
    this.#onRetry = onRetry;
    this.#baseUrl = baseUrl.replace(/\/+$/, '');
    this.#version = clientVersion;
    this.#token = token;
    this.#maxAttempts = retry.maxAttempts ?? 8;
    this.#baseDelayMs = retry.baseDelayMs ?? 500;
    this.#maxDelayMs = retry.maxDelayMs ?? 30_000;
    this.#timeoutMs = requestTimeoutMs;
    this.#sleep = sleep ?? ((ms, signal) => delay(ms, undefined, { signal }));
    this.#dispatcher = dispatcher;
  }

  get token(): string | undefined {
    return this.#token;
  }

  /**
   * Registers this node under `nick`; the returned token is also kept for later calls. With
   * `token` (32 random bytes, base64url, saved by the caller first) a repeated registration after
   * a crash is recognised as the same node instead of refused as a taken nick.
   */
  async register(nick: string, options: { signal?: AbortSignal; token?: string } = {}): Promise<{ nodeId: number; nick: string; token: string }> {
    const body = options.token ? { nick, token: options.token } : { nick };
    const res = (await this.#call('POST', '/api/v1/register', body, options.signal)) as { node_id: number; nick: string; token: string };
    this.#token = res.token;
    return { nodeId: res.node_id, nick: res.nick, token: res.token };
  }

  /** One claim request: an item, "later" (with the wait the tracker asks for), or "done". */
  async tryClaim(options: { signal?: AbortSignal; only?: ItemKind } = {}): Promise<ClaimAnswer> {
    const res = (await this.#call('POST', '/api/v1/claim', options.only ? { only: options.only } : {}, options.signal)) as WireItem;
    if (res.item) {
      const { item } = res;
      // The item ID names a directory (DIR/items/ID): only a plain integer may reach a path.
      if (!Number.isSafeInteger(item.id) || item.id < 0 || typeof item.lease_id !== 'string' || !Array.isArray(item.ranges)) {
        throw new TrackerRequestError(`tracker sent a malformed item (id ${JSON.stringify(item.id)?.slice(0, 80)}); refusing it`, { status: 502, code: 'E_TRACKER_REPLY' });
      }
      const kind: ItemKind = item.kind === 'media' ? 'media' : 'posts';
      const urls = kind === 'media' ? wireUrls(item.urls) : undefined;
      return {
        kind: 'item',
        item: {
          id: item.id,
          kind,
          ...(urls ? { urls } : {}),
          media: {
            collect: res.media?.collect === true,
            inline: (res.media?.inline ?? []).filter((k): k is MediaKind => (MEDIA_KINDS as readonly string[]).includes(k)),
            ...(Array.isArray(res.media?.hosts) ? { hosts: res.media.hosts.filter((h): h is string => typeof h === 'string') } : {}),
          },
          ranges: RangeSet.fromJSON(item.ranges),
          leaseId: item.lease_id,
          leaseExpiresAt: new Date(item.lease_expires_at),
          leaseSecs: res.lease_secs ?? 0,
          profile: res.profile ?? '',
          upload: res.upload?.mode === 's3-presigned' ? { mode: 's3-presigned' } : null,
        },
      };
    }
    if (res.done) return { kind: 'done' };
    return { kind: 'later', retryAfterSecs: res.retry_after_secs ?? 30 };
  }

  /** Claims an item, waiting as long as the tracker says "later"; `null` when nothing is left. */
  async claim(options: { signal?: AbortSignal; only?: ItemKind } = {}): Promise<TrackerItem | null> {
    for (;;) {
      const answer = await this.tryClaim(options);
      if (answer.kind === 'item') return answer.item;
      if (answer.kind === 'done') return null;
      await this.#sleep(answer.retryAfterSecs * 1000, options.signal);
    }
  }

  /**
   * Reports finished sub-ranges, and with `media` (at most 500 URLs, under 64 KiB) the media URLs
   * found in them; the lease is extended. A retried report is harmless: the tracker deduplicates.
   */
  async heartbeat(leaseId: string, finished: RangeSet, media?: readonly string[]): Promise<{ leaseExpiresAt: Date; remaining: RangeSet; mediaQueued: number; mediaRefused: number }> {
    const body = { lease_id: leaseId, finished: finished.toJSON(), ...(media && media.length > 0 ? { media } : {}) };
    const res = (await this.#call('POST', '/api/v1/heartbeat', body)) as { lease_expires_at: string; remaining: [number, number][]; media_queued?: number; media_refused?: number };
    return { leaseExpiresAt: new Date(res.lease_expires_at), remaining: RangeSet.fromJSON(res.remaining), mediaQueued: res.media_queued ?? 0, mediaRefused: res.media_refused ?? 0 };
  }

  /** Finishes the item. Safe to repeat (a retried done is answered `duplicate: true`). */
  async done(leaseId: string, stats: DoneStats, options: { missing?: RangeSet } = {}): Promise<{ duplicate: boolean }> {
    const missing = options.missing && !options.missing.isEmpty ? { missing: options.missing.toJSON() } : {};
    const res = (await this.#call('POST', '/api/v1/done', { lease_id: leaseId, stats, ...missing })) as { duplicate: boolean };
    return { duplicate: res.duplicate };
  }

  /**
   * Pre-signed PUT URLs for files of the leased item (`NAME.warc.gz` or `shard.json`, with the
   * size and sha256 they will be uploaded with). Only for a live lease of a project with uploads.
   */
  async uploadUrls(leaseId: string, files: readonly { name: string; size: number; sha256: string }[]): Promise<UploadUrl[]> {
    const res = (await this.#call('POST', '/api/v1/upload-urls', { lease_id: leaseId, files })) as {
      urls: { name: string; key: string; url: string; method: 'PUT'; headers: Record<string, string>; expires_at: string }[];
    };
    return res.urls.map((u) => ({ name: u.name, key: u.key, url: u.url, method: u.method, headers: u.headers, expiresAt: new Date(u.expires_at) }));
  }

  /** Gives the item back; the tracker queues what is not in `finished` (or earlier heartbeats). */
  async release(leaseId: string, finished?: RangeSet): Promise<{ remaining: RangeSet }> {
    const body = finished ? { lease_id: leaseId, finished: finished.toJSON() } : { lease_id: leaseId };
    const res = (await this.#call('POST', '/api/v1/release', body)) as { remaining: [number, number][] };
    return { remaining: RangeSet.fromJSON(res.remaining) };
  }

  /**
   * Gives the item back with an error message; a media item may say why each URL failed
   * (`mediaErrors`: seq → reason); a post item names the IDs that answered 404 (`missing`), as
   * `done` does, so a followed project asks again for those near its live edge (issue 21 §1).
   */
  async fail(leaseId: string, error: string, finished?: RangeSet, mediaErrors?: ReadonlyMap<number, string>, options: { missing?: RangeSet } = {}): Promise<{ remaining: RangeSet }> {
    const errors = mediaErrors && mediaErrors.size > 0 ? { media_errors: [...mediaErrors].slice(0, 10_000).map(([seq, reason]) => [seq, reason.slice(0, 500)]) } : {};
    const missing = options.missing && !options.missing.isEmpty ? { missing: options.missing.toJSON() } : {};
    const body = { lease_id: leaseId, error: error.slice(0, 2000), ...(finished ? { finished: finished.toJSON() } : {}), ...errors, ...missing };
    const res = (await this.#call('POST', '/api/v1/fail', body)) as { remaining: [number, number][] };
    return { remaining: RangeSet.fromJSON(res.remaining) };
  }

  async #call(method: 'GET' | 'POST', path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    const url = `${this.#baseUrl}${path}`;
    const headers: Record<string, string> = { 'x-lifeboat-version': this.#version, accept: 'application/json' };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    // The one retry loop (config/retry.ts): 429 and 5xx answers and network errors are tried again,
    // after the server's Retry-After (seconds or an HTTP date) or the backoff; a 4xx is final.
    const problemOf = (err: Error): string => err.message;
    const { value } = await retrying<unknown>(
      {
        maxAttempts: this.#maxAttempts,
        backoffBaseMs: this.#baseDelayMs,
        backoffMaxMs: this.#maxDelayMs,
        jitter: 'equal',
        sleep: this.#sleep,
        ...(signal ? { signal } : {}),
        onRetry: (_reason, r) => {
          if (r.attempt < r.maxAttempts) this.#onRetry?.({ path, attempt: r.attempt, maxAttempts: r.maxAttempts, waitMs: r.waitMs, problem: problemOf(r.error) });
        },
        giveUp: (last) => new TrackerUnavailableError(`tracker at ${this.#baseUrl} unavailable after ${this.#maxAttempts} attempts (${problemOf(last)})`, { cause: last instanceof RetryableFetchError ? undefined : last }),
      },
      async () => {
        try {
          const res = await request(url, {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            dispatcher: this.#dispatcher,
            headersTimeout: this.#timeoutMs,
            bodyTimeout: this.#timeoutMs,
            signal,
          });
          const text = await res.body.text();
          if (res.statusCode >= 200 && res.statusCode < 300) return { ok: JSON.parse(text) as unknown };
          const parsed = safeJson(text) as { error?: string; message?: string } | undefined;
          const message = parsed?.message ?? `HTTP ${res.statusCode}`;
          if (!isRetryableStatus(res.statusCode)) {
            throw new TrackerRequestError(`tracker refused ${path}: ${message}`, { status: res.statusCode, code: parsed?.error ?? `E_HTTP_${res.statusCode}` });
          }
          const header = res.headers['retry-after'];
          const waitMs = parseRetryAfter(Array.isArray(header) ? header[0] : header);
          const retry = new RetryableFetchError(`HTTP ${res.statusCode}: ${message}`, { code: `E_HTTP_${res.statusCode}` });
          return waitMs !== undefined ? { retry, waitMs } : { retry };
        } catch (err) {
          if (err instanceof TrackerRequestError || signal?.aborted) throw err;
          return { retry: err as Error };
        }
      },
    );
    return value;
  }
}

/** A media item's [seq, url] pairs; anything else is a malformed reply, refused. */
function wireUrls(urls: unknown): MediaUrl[] {
  if (!Array.isArray(urls)) throw new TrackerRequestError('tracker sent a media item without its URLs; refusing it', { status: 502, code: 'E_TRACKER_REPLY' });
  return urls.map((pair) => {
    if (!Array.isArray(pair) || !Number.isSafeInteger(pair[0]) || typeof pair[1] !== 'string') {
      throw new TrackerRequestError('tracker sent a malformed media URL; refusing the item', { status: 502, code: 'E_TRACKER_REPLY' });
    }
    return { seq: pair[0] as number, url: pair[1] };
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
