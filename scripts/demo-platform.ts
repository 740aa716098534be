/**
 * The bundled demo platform: a deterministic fake social network on node:http, used by the
 * crawler's tests, `lifeboat demo` and the benchmarks.
 *
 * Every byte it serves is a pure function of (seed, posts, url, path), computed per request —
 * nothing is precomputed, so `posts: 10_000_000` costs no more memory than `posts: 100`.
 * The same functions are exposed as ground truth (`post()`, `mediaBody()`) so a test can check
 * what a crawler archived without a second source of truth.
 *
 * Faults are opt-in: `chaos` (5xx, resets, stalls, short bodies; never more than
 * MAX_CONSECUTIVE_CHAOS in a row on one path, so a retrying client always gets through) and
 * `rateLimit` (a global token bucket answering 429 + `Retry-After: 1`). /robots.txt is exempt
 * from both.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { gzipSync } from 'node:zlib';

export const CHAOS_KINDS = ['5xx', 'reset', 'stall', 'short'] as const;
export type ChaosKind = (typeof CHAOS_KINDS)[number];

/** After this many chaos answers in a row on one path, the next request to it is served normally. */
export const MAX_CONSECUTIVE_CHAOS = 3;

export interface DemoPlatformOptions {
  /** Interface to bind. Default '127.0.0.1'. */
  host?: string;
  /** Port to bind. Default 0 (ephemeral). */
  port?: number;
  /** Highest post ID; IDs are 1..posts. Default 1000. */
  posts?: number;
  /** Seed for all content. Default 1. */
  seed?: number;
  /** Fault injection; `rate` is a probability in [0, 1]; `stallMs` defaults to 5000. */
  chaos?: { rate: number; kinds?: ChaosKind[]; stallMs?: number };
  /** Global token bucket: `rps` tokens per second, `burst` (default max(1, rps)) capacity. */
  rateLimit?: { rps: number; burst?: number; retryAfter?: boolean };
  /** Default "User-agent: *\nDisallow: /admin/\n". */
  robotsTxt?: string;
  /** Absolute base (no trailing slash) for ~10% of image URLs, e.g. an out-of-scope canary host. */
  mediaBaseUrl?: string;
  /** Count hits per path in `stats.paths`. Default true; turn off for very long runs (memory). */
  trackPaths?: boolean;
  /**
   * IDs whose `/app/{id}` page never finishes: an inline script spins forever (a hanging page,
   * for browser-capture tests). The API and `/p/{id}` answer normally.
   */
  hangPages?: number[];
}

export interface DemoPlatformStats {
  requests: number;
  byStatus: Record<number, number>;
  chaos: number;
  rateLimited: number;
  /** path (with query) -> hits; empty when `trackPaths` is false. */
  paths: Map<string, number>;
}

export interface DemoPost {
  id: number;
  status: 'public' | 'missing' | 'gone' | 'private';
  /** The API object, for public posts only. */
  json?: unknown;
  /** Absolute URLs of the post's images, video and avatar (public posts only), deduplicated. */
  mediaUrls: string[];
  /** Private posts only: a marker that appears in the post's text. It must never be served. */
  secret?: string;
}

export interface DemoPlatform {
  url: string;
  port: number;
  /** Closes the server, cancels stalls and destroys open sockets. */
  close(): Promise<void>;
  setChaos(chaos: DemoPlatformOptions['chaos'] | undefined): void;
  setRateLimit(r: DemoPlatformOptions['rateLimit'] | undefined): void;
  stats: DemoPlatformStats;
  post(id: number): DemoPost;
  /** The exact bytes served for a media path such as /media/img/12-0.jpg; undefined when none. */
  mediaBody(path: string): Buffer | undefined;
  /** Every absolute media URL referenced by public posts, deduplicated. Walks all IDs: O(posts). */
  publicMediaUrls(): string[];
}

// ---------------------------------------------------------------------------------------------
// Deterministic content

const SALT = { gap: 1, status: 2, author: 3, text: 4, media: 5, links: 6, time: 7, bytes: 8 } as const;
const GAP_BLOCK = 64;
const AUTHORS = 50;
const ADJECTIVES = ['brave', 'calm', 'eager', 'fuzzy', 'gentle', 'happy', 'jolly', 'lucky', 'quiet', 'witty'] as const;
const ANIMALS = ['otter', 'heron', 'badger', 'lynx', 'puffin'] as const;
const WORDS = [
  'the', 'a', 'boat', 'harbour', 'storm', 'light', 'archive', 'signal', 'tide', 'rope', 'deck', 'map',
  'north', 'coffee', 'morning', 'rescue', 'crew', 'anchor', 'wave', 'night', 'is', 'was', 'and', 'to',
  'we', 'saved', 'every', 'post', 'before', 'dark', 'café', 'naïve', 'Ünïcödé', '🚀', '⚓', '&', '<3',
  '"quoted"', "it's", '#lifeboat', '#archive', 'déjà', 'vu', '日本語', 'ok', 'lol', 'again',
] as const;
const EPOCH_MS = Date.UTC(2021, 0, 1);

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of (seed, n, salt); n may exceed 2^32. */
function hash(seed: number, n: number, salt: number): number {
  const hi = Math.floor(n / 0x1_0000_0000) >>> 0;
  let h = fmix32((seed >>> 0) ^ 0x9e3779b9);
  h = fmix32(h ^ (n >>> 0));
  h = fmix32((h + hi) ^ Math.imul(salt, 0x27d4eb2f));
  return h;
}

const unit = (h: number): number => h / 0x1_0000_0000;

/** mulberry32: a small seeded PRNG returning uint32s. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const authorHandle = (i: number): string => `${ADJECTIVES[i % 10]}_${ANIMALS[Math.floor(i / 10) % 5]}`;
const HANDLES = new Set(Array.from({ length: AUTHORS }, (_, i) => authorHandle(i)));

type PostStatus = DemoPost['status'];
type UrlForm = 'abs' | 'rel' | 'ext';
interface PostShape {
  id: number;
  handle: string;
  images: UrlForm[];
  video: UrlForm | undefined;
}

function statusOf(seed: number, posts: number, id: number): PostStatus {
  if (!Number.isSafeInteger(id) || id < 1 || id > posts) return 'missing';
  // Runs of missing IDs: in a quarter of the blocks of 64 IDs, a gap of 3-12 consecutive IDs (~2.9%).
  const b = hash(seed, Math.floor((id - 1) / GAP_BLOCK), SALT.gap);
  if ((b & 3) === 0) {
    const len = 3 + ((b >>> 2) % 10);
    const start = (b >>> 8) % (GAP_BLOCK - len);
    const offset = (id - 1) % GAP_BLOCK;
    if (offset >= start && offset < start + len) return 'missing';
  }
  const r = unit(hash(seed, id, SALT.status));
  if (r < 0.03) return 'missing';
  if (r < 0.05) return 'gone';
  if (r < 0.07) return 'private';
  return 'public';
}

/** Structure of a public post (what media it has): cheap, and all that mediaBody() needs. */
function shapeOf(seed: number, id: number, external: boolean): PostShape {
  const handle = authorHandle(hash(seed, id, SALT.author) % AUTHORS);
  const m = hash(seed, id, SALT.media);
  const r = m % 100;
  const count = r < 40 ? 0 : r < 70 ? 1 : r < 90 ? 2 : 3;
  const next = prng(m);
  const form = (allowExt: boolean): UrlForm => {
    const f = next() % 10;
    return allowExt && external && f === 0 ? 'ext' : f < 5 ? 'abs' : 'rel';
  };
  const images = Array.from({ length: count }, () => form(true));
  const video = unit(hash(seed, id, SALT.media + 100)) < 0.05 ? form(false) : undefined;
  return { id, handle, images, video };
}

function textOf(seed: number, id: number, secret: string | undefined): string {
  const next = prng(hash(seed, id, SALT.text));
  const n = 6 + (next() % 25);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(WORDS[next() % WORDS.length]!);
  if (secret) words.splice(next() % words.length, 0, secret);
  return words.join(' ');
}

interface ContentOptions {
  seed: number;
  posts: number;
  url: string;
  mediaBaseUrl: string | undefined;
}

/** Pure functions from (seed, posts, url) to everything the platform serves. */
class DemoContent {
  readonly #o: ContentOptions;
  readonly #cache = new Map<string, Buffer>();

  constructor(o: ContentOptions) {
    this.#o = o;
  }

  status(id: number): PostStatus {
    return statusOf(this.#o.seed, this.#o.posts, id);
  }

  post(id: number): DemoPost {
    const { seed, url, mediaBaseUrl } = this.#o;
    const status = this.status(id);
    if (status === 'private') return { id, status, mediaUrls: [], secret: `PRIVATE-${id}-SECRET` };
    if (status !== 'public') return { id, status, mediaUrls: [] };
    const shape = shapeOf(seed, id, mediaBaseUrl !== undefined);
    const link = (form: UrlForm, path: string): string =>
      form === 'abs' ? `${url}${path}` : form === 'ext' ? `${mediaBaseUrl}${path}` : path;
    const media: { type: 'image' | 'video'; url: string }[] = shape.images.map((form, k) => ({
      type: 'image',
      url: link(form, `/media/img/${id}-${k}.jpg`),
    }));
    if (shape.video) media.push({ type: 'video', url: link(shape.video, `/media/video/${id}.mp4`) });
    const l = hash(seed, id, SALT.links);
    const lower = (salt: number): number => id - 1 - (hash(seed, id, salt) % Math.min(id - 1, 500));
    const replyTo = id > 1 && l % 100 < 20 ? lower(SALT.links + 100) : null;
    const repostOf = id > 1 && (l >>> 8) % 100 < 5 ? lower(SALT.links + 200) : null;
    const i = HANDLE_INDEX.get(shape.handle)!;
    const displayName = `${cap(ADJECTIVES[i % 10]!)} ${cap(ANIMALS[Math.floor(i / 10) % 5]!)}`;
    const json = {
      id,
      author: {
        handle: shape.handle,
        display_name: displayName,
        avatar_url: link((l >>> 16) & 1 ? 'abs' : 'rel', `/media/avatar/${shape.handle}.png`),
      },
      created_at: new Date(EPOCH_MS + id * 37_000 + (hash(seed, id, SALT.time) % 30_000)).toISOString(),
      text: textOf(seed, id, undefined),
      media,
      reply_to: replyTo,
      repost_of: repostOf,
    };
    const mediaUrls = [...new Set([...media.map((m) => m.url), json.author.avatar_url].map((u) => new URL(u, url).href))];
    return { id, status, json, mediaUrls };
  }

  /** The would-be text of a private post (never served; used to prove the marker would leak). */
  privateText(id: number): string {
    return textOf(this.#o.seed, id, `PRIVATE-${id}-SECRET`);
  }

  mediaBody(path: string): Buffer | undefined {
    const cached = this.#cache.get(path);
    if (cached) return cached;
    const body = this.#mediaBody(path);
    if (body) {
      if (this.#cache.size >= 32) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(path, body);
    }
    return body;
  }

  #mediaBody(path: string): Buffer | undefined {
    const { seed } = this.#o;
    const h = (fnv1a(path) ^ hash(seed, 0, SALT.bytes)) >>> 0;
    let m = /^\/media\/img\/(\d+)-(\d)\.jpg$/.exec(path);
    if (m) {
      const id = Number(m[1]);
      if (String(id) !== m[1] || this.status(id) !== 'public') return undefined;
      if (Number(m[2]) >= shapeOf(seed, id, false).images.length) return undefined;
      return withMagic(randomBytes(h, 2048 + (h % (38 * 1024))), JPEG_HEAD, JPEG_TAIL);
    }
    m = /^\/media\/video\/(\d+)\.mp4$/.exec(path);
    if (m) {
      const id = Number(m[1]);
      if (String(id) !== m[1] || this.status(id) !== 'public' || !shapeOf(seed, id, false).video) return undefined;
      return withMagic(randomBytes(h, 200 * 1024 + (h % (1300 * 1024))), MP4_HEAD);
    }
    m = /^\/media\/avatar\/([a-z_]+)\.png$/.exec(path);
    if (m && HANDLES.has(m[1]!)) return withMagic(randomBytes(h, 4500 + (h % 1000)), PNG_HEAD);
    return undefined;
  }

  publicMediaUrls(): string[] {
    const out = new Set<string>();
    for (let id = 1; id <= this.#o.posts; id++) {
      if (this.status(id) === 'public') for (const u of this.post(id).mediaUrls) out.add(u);
    }
    return [...out];
  }
}

const HANDLE_INDEX = new Map([...HANDLES].map((h, i) => [h, i] as const));
const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

const JPEG_HEAD = Buffer.from('ffd8ffe000104a46494600010100000100010000', 'hex');
const JPEG_TAIL = Buffer.from('ffd9', 'hex');
const PNG_HEAD = Buffer.from('89504e470d0a1a0a0000000d4948445200000030000000300806000000', 'hex');
const MP4_HEAD = Buffer.from('000000186674797069736f6d0000020069736f6d6d703432', 'hex');

/** xorshift32 bytes: ~1 ms per MB, so even a 1.5 MB video is cheap to regenerate. */
function randomBytes(seed: number, size: number): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer, 0, size);
}

function withMagic(body: Buffer, head: Buffer, tail?: Buffer): Buffer {
  head.copy(body, 0);
  if (tail) tail.copy(body, body.length - tail.length);
  return body;
}

// ---------------------------------------------------------------------------------------------
// HTTP

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const DEFAULT_ROBOTS = 'User-agent: *\nDisallow: /admin/\n';
const APP_JS = `// Client-side rendering for the demo platform: fills #rendered from the JSON API.
// On the JS-only shell (/app/{id}, article[data-shell]) it renders the author and avatar too.
(function () {
  var article = document.querySelector('article.post');
  var target = document.getElementById('rendered');
  if (!article || !target) return;
  fetch('/api/v1/posts/' + article.getAttribute('data-id'), { headers: { accept: 'application/json' } })
    .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
    .then(function (post) {
      if (article.hasAttribute('data-shell')) {
        var avatar = document.createElement('img');
        avatar.className = 'rendered-avatar';
        avatar.src = post.author.avatar_url;
        target.appendChild(avatar);
        var author = document.createElement('span');
        author.className = 'rendered-author';
        author.textContent = post.author.display_name + ' @' + post.author.handle;
        target.appendChild(author);
      }
      var p = document.createElement('p');
      p.className = 'rendered-text';
      p.textContent = post.text;
      target.appendChild(p);
      post.media.forEach(function (m) {
        var el = document.createElement(m.type === 'video' ? 'video' : 'img');
        el.className = 'rendered-media';
        el.src = m.url;
        target.appendChild(el);
        // Scripts also reach out on their own, past the Fetch layer a crawler may rely on: a
        // WebSocket and a beacon to every other origin a post names (scope must stop both).
        var other = new URL(m.url, location.href);
        if (other.origin !== location.origin) {
          try { new WebSocket(other.origin.replace(/^http/, 'ws') + '/live'); } catch (e) {}
          try { navigator.sendBeacon(other.origin + '/beacon', 'seen'); } catch (e) {}
        }
      });
      target.setAttribute('data-rendered', 'true');
    })
    .catch(function (e) { target.textContent = 'failed to load: ' + e.message; });
})();
`;

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function acceptsGzip(req: IncomingMessage): boolean {
  const ae = req.headers['accept-encoding'];
  if (typeof ae !== 'string') return false;
  return ae.split(',').some((part) => {
    const [name, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (name !== 'gzip' && name !== 'x-gzip') return false;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

function jsonReply(req: IncomingMessage, status: number, value: unknown): Reply {
  const raw = Buffer.from(JSON.stringify(value));
  const headers: Record<string, string> = { 'content-type': JSON_TYPE, vary: 'Accept-Encoding' };
  if (!acceptsGzip(req)) return { status, headers, body: raw };
  return { status, headers: { ...headers, 'content-encoding': 'gzip' }, body: gzipSync(raw) };
}

const textReply = (status: number, text: string, type = 'text/plain; charset=utf-8'): Reply => ({
  status,
  headers: { 'content-type': type },
  body: Buffer.from(text),
});

function postPage(post: DemoPost, url: string): string {
  const p = post.json as {
    id: number;
    author: { handle: string; display_name: string; avatar_url: string };
    created_at: string;
    text: string;
    media: { type: string; url: string }[];
    reply_to: number | null;
  };
  const media = p.media
    .map((m) =>
      m.type === 'video'
        ? `<video src="${escapeHtml(m.url)}" controls></video>`
        : `<img class="media" src="${escapeHtml(m.url)}" alt="">`,
    )
    .join('\n');
  const reply = p.reply_to === null ? '' : `<a class="reply-to" href="/p/${p.reply_to}">in reply to #${p.reply_to}</a>\n`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Post ${p.id} by @${p.author.handle}</title>
<link rel="canonical" href="${url}/p/${p.id}"></head>
<body>
<article class="post" data-id="${p.id}">
<header><img class="avatar" src="${escapeHtml(p.author.avatar_url)}" alt="" width="48" height="48">
<span class="author">${escapeHtml(p.author.display_name)} @${p.author.handle}</span>
<time datetime="${p.created_at}">${p.created_at}</time></header>
<p class="text">${escapeHtml(p.text)}</p>
${media}
${reply}</article>
<div id="rendered"></div>
<script src="/static/app.js"></script>
</body></html>
`;
}

/**
 * The JS-only shell of a post (`/app/{id}`): no text, no media in the HTML; app.js fetches the
 * API and renders them, as many platforms do. `hang` adds a script that never returns.
 */
function shellPage(id: number, hang: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Post ${id}</title></head>
<body>
<article class="post" data-id="${id}" data-shell></article>
<div id="rendered"></div>
<script src="/static/app.js"></script>
${hang ? '<script>for (;;) {}</script>\n' : ''}</body></html>
`;
}

function errorPage(status: number): Reply {
  const title = status === 403 ? 'This post is private' : status === 410 ? 'This post was deleted' : 'Not found';
  return textReply(status, `<!doctype html><title>${title}</title><h1>${title}</h1>\n`, 'text/html; charset=utf-8');
}

const POST_ERRORS = { missing: [404, 'not found'], gone: [410, 'gone'], private: [403, 'private'] } as const;

function mediaReply(req: IncomingMessage, path: string, body: Buffer, etag: string): Reply {
  const type = path.endsWith('.jpg') ? 'image/jpeg' : path.endsWith('.png') ? 'image/png' : 'video/mp4';
  const headers = { 'content-type': type, etag, 'accept-ranges': 'bytes', 'cache-control': 'public, max-age=86400' };
  if (req.headers['if-none-match'] === etag) return { status: 304, headers, body: Buffer.alloc(0) };
  const range = req.headers.range;
  const m = typeof range === 'string' ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return { status: 200, headers, body };
  const size = body.length;
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) {
    return { status: 416, headers: { ...headers, 'content-range': `bytes */${size}` }, body: Buffer.alloc(0) };
  }
  return {
    status: 206,
    headers: { ...headers, 'content-range': `bytes ${start}-${end}/${size}` },
    body: body.subarray(start, end + 1),
  };
}

class TokenBucket {
  readonly #rps: number;
  readonly #burst: number;
  #tokens: number;
  #last = performance.now();

  constructor(rps: number, burst: number) {
    this.#rps = rps;
    this.#burst = burst;
    this.#tokens = burst;
  }

  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#rps);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

function checkChaos(chaos: DemoPlatformOptions['chaos']): void {
  if (!chaos) return;
  if (!(chaos.rate >= 0 && chaos.rate <= 1)) throw new RangeError(`chaos.rate must be in [0, 1], got ${chaos.rate}`);
  for (const k of chaos.kinds ?? []) if (!CHAOS_KINDS.includes(k)) throw new RangeError(`unknown chaos kind: ${k}`);
  if (chaos.kinds?.length === 0) throw new RangeError('chaos.kinds must not be empty');
}

function checkRateLimit(r: DemoPlatformOptions['rateLimit']): void {
  if (r && !(r.rps > 0)) throw new RangeError(`rateLimit.rps must be > 0, got ${r.rps}`);
  if (r?.burst !== undefined && !(r.burst >= 1)) throw new RangeError(`rateLimit.burst must be >= 1, got ${r.burst}`);
}

export async function startDemoPlatform(opts: DemoPlatformOptions = {}): Promise<DemoPlatform> {
  const { host = '127.0.0.1', port = 0, posts = 1000, seed = 1, robotsTxt = DEFAULT_ROBOTS, trackPaths = true } = opts;
  const hangPages = new Set(opts.hangPages ?? []);
  if (!Number.isSafeInteger(posts) || posts < 0) throw new RangeError(`posts must be a non-negative integer, got ${posts}`);
  checkChaos(opts.chaos);
  checkRateLimit(opts.rateLimit);
  let chaos = opts.chaos;
  let rateLimit = opts.rateLimit;
  let bucket = rateLimit ? new TokenBucket(rateLimit.rps, rateLimit.burst ?? Math.max(1, rateLimit.rps)) : undefined;
  const chaosRandom = prng(hash(seed, 0, 0xc4a05));
  const chaosStreak = new Map<string, number>();
  const stats: DemoPlatformStats = { requests: 0, byStatus: {}, chaos: 0, rateLimited: 0, paths: new Map() };
  const sockets = new Set<Socket>();
  const stalls = new Set<NodeJS.Timeout>();
  let content: DemoContent | undefined;

  const count = (status: number): void => {
    stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
  };

  const route = (req: IncomingMessage, path: string, c: DemoContent, url: string): Reply => {
    if (path === '/robots.txt') return textReply(200, robotsTxt);
    if (path === '/api/v1/latest') return jsonReply(req, 200, { max_id: posts });
    if (path === '/admin' || path.startsWith('/admin/')) return textReply(200, 'secret admin\n');
    if (path === '/static/app.js') return textReply(200, APP_JS, 'text/javascript; charset=utf-8');
    if (path === '/') {
      return textReply(200, `<!doctype html><title>demo platform</title><h1>demo platform</h1>\n<p>${posts} posts. <a href="/api/v1/latest">latest</a></p>\n`, 'text/html; charset=utf-8');
    }
    const shell = /^\/app\/(\d{1,16})$/.exec(path);
    if (shell) {
      const id = Number(shell[1]);
      const status = String(id) === shell[1] ? c.status(id) : 'missing';
      if (status !== 'public') return errorPage(POST_ERRORS[status][0]);
      return textReply(200, shellPage(id, hangPages.has(id)), 'text/html; charset=utf-8');
    }
    const m = /^\/(api\/v1\/posts|p)\/(\d{1,16})$/.exec(path);
    if (m) {
      const id = Number(m[2]);
      const isApi = m[1] !== 'p';
      const status = String(id) === m[2] ? c.status(id) : 'missing';
      if (status !== 'public') {
        const [code, error] = POST_ERRORS[status];
        return isApi ? jsonReply(req, code, { error }) : errorPage(code);
      }
      const post = c.post(id);
      return isApi ? jsonReply(req, 200, post.json) : textReply(200, postPage(post, url), 'text/html; charset=utf-8');
    }
    if (path.startsWith('/media/')) {
      const body = c.mediaBody(path);
      if (body) return mediaReply(req, path, body, `"${((fnv1a(path) ^ seed) >>> 0).toString(16)}-${body.length.toString(16)}"`);
    }
    return path.startsWith('/api/') ? jsonReply(req, 404, { error: 'not found' }) : errorPage(404);
  };

  const sendNormally = (req: IncomingMessage, res: ServerResponse, reply: Reply): void => {
    count(reply.status);
    res.writeHead(reply.status, { ...reply.headers, 'content-length': String(reply.body.length) });
    res.end(req.method === 'HEAD' ? undefined : reply.body);
  };

  /** Writes a response head and part of the body straight to the socket, then ends it. */
  const sendBroken = (req: IncomingMessage, reply: Reply, kind: 'reset' | 'short'): void => {
    count(reply.status);
    const socket = req.socket;
    const part = req.method === 'HEAD' ? Buffer.alloc(0) : reply.body.subarray(0, Math.floor(reply.body.length / 2));
    const length = kind === 'short' ? reply.body.length + 1024 : reply.body.length;
    const head = [`HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? ''}`, `date: ${new Date().toUTCString()}`];
    for (const [k, v] of Object.entries({ ...reply.headers, 'content-length': String(length) })) head.push(`${k}: ${v}`);
    const bytes = Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), kind === 'short' ? reply.body : part]);
    socket.write(bytes, () => (kind === 'reset' ? socket.destroy() : socket.end()));
  };

  const stall = (res: ServerResponse, ms: number, then: () => void): void => {
    const timer = setTimeout(() => {
      stalls.delete(timer);
      if (!res.destroyed) then();
    }, ms);
    stalls.add(timer);
    res.once('close', () => {
      clearTimeout(timer);
      stalls.delete(timer);
    });
  };

  const sendChaos = (req: IncomingMessage, res: ServerResponse, reply: Reply, kind: ChaosKind, stallMs: number): void => {
    stats.chaos++;
    if (kind === '5xx' || (kind === 'short' && req.method === 'HEAD')) {
      const status = [500, 502, 503][chaosRandom() % 3]!;
      sendNormally(req, res, textReply(status, `chaos: ${STATUS_CODES[status]}\n`));
    } else if (kind === 'reset' || kind === 'short') {
      sendBroken(req, reply, kind);
    } else if (chaosRandom() % 2 === 0 || reply.body.length < 2 || req.method === 'HEAD') {
      stall(res, stallMs, () => sendNormally(req, res, reply));
    } else {
      // Stall mid-body: head and the first half now, the rest after stallMs.
      count(reply.status);
      const half = Math.floor(reply.body.length / 2);
      res.writeHead(reply.status, { ...reply.headers, 'content-length': String(reply.body.length) });
      res.write(reply.body.subarray(0, half));
      stall(res, stallMs, () => res.end(reply.body.subarray(half)));
    }
  };

  const server = createServer((req, res) => {
    stats.requests++;
    const target = req.url ?? '/';
    if (trackPaths) stats.paths.set(target, (stats.paths.get(target) ?? 0) + 1);
    const c = content!;
    const url = publicUrl;
    let path: string;
    try {
      path = new URL(target, url).pathname;
    } catch {
      return sendNormally(req, res, textReply(400, 'bad request\n'));
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendNormally(req, res, { ...textReply(405, 'method not allowed\n'), headers: { allow: 'GET, HEAD' } });
    }
    if (path === '/robots.txt') return sendNormally(req, res, route(req, path, c, url));
    if (bucket && !bucket.take()) {
      stats.rateLimited++;
      const reply = jsonReply(req, 429, { error: 'rate limited' });
      if (rateLimit?.retryAfter !== false) reply.headers['retry-after'] = '1';
      return sendNormally(req, res, reply);
    }
    const reply = route(req, path, c, url);
    const streak = chaosStreak.get(target) ?? 0;
    if (chaos && chaos.rate > 0 && streak < MAX_CONSECUTIVE_CHAOS && unit(chaosRandom()) < chaos.rate) {
      chaosStreak.set(target, streak + 1);
      const kinds = chaos.kinds ?? CHAOS_KINDS;
      return sendChaos(req, res, reply, kinds[chaosRandom() % kinds.length]!, chaos.stallMs ?? 5000);
    }
    chaosStreak.delete(target);
    sendNormally(req, res, reply);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('demo platform: unexpected server address');
  const publicUrl = `http://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`;
  content = new DemoContent({ seed, posts, url: publicUrl, mediaBaseUrl: opts.mediaBaseUrl?.replace(/\/+$/, '') });
  const c = content;

  let closing: Promise<void> | undefined;
  return {
    url: publicUrl,
    port: address.port,
    stats,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const timer of stalls) clearTimeout(timer);
        stalls.clear();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
    setChaos(next) {
      checkChaos(next);
      chaos = next;
      chaosStreak.clear();
    },
    setRateLimit(next) {
      checkRateLimit(next);
      rateLimit = next;
      bucket = next ? new TokenBucket(next.rps, next.burst ?? Math.max(1, next.rps)) : undefined;
    },
    post: (id) => c.post(id),
    mediaBody: (path) => {
      const body = c.mediaBody(path);
      return body && Buffer.from(body);
    },
    publicMediaUrls: () => c.publicMediaUrls(),
  };
}

/** Ground truth without a server (for unit tests of extraction): the content at a given URL. */
export function demoContent(opts: { seed?: number; posts?: number; url: string; mediaBaseUrl?: string }): {
  post(id: number): DemoPost;
  mediaBody(path: string): Buffer | undefined;
  privateText(id: number): string;
} {
  const c = new DemoContent({ seed: opts.seed ?? 1, posts: opts.posts ?? 1000, url: opts.url, mediaBaseUrl: opts.mediaBaseUrl });
  return {
    post: (id) => c.post(id),
    mediaBody: (p) => {
      const body = c.mediaBody(p);
      return body && Buffer.from(body);
    },
    privateText: (id) => c.privateText(id),
  };
}
