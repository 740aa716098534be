/**
 * The demo platform's content: every post, page and media body as a pure function of (seed,
 * posts, url, path), computed on demand — nothing is precomputed, so `posts: 10_000_000` costs
 * no more memory than `posts: 100`. The server (demo-platform.ts) serves it through the routes
 * (demo-routes.ts); tests read the same functions as ground truth.
 */

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
export function hash(seed: number, n: number, salt: number): number {
  const hi = Math.floor(n / 0x1_0000_0000) >>> 0;
  let h = fmix32((seed >>> 0) ^ 0x9e3779b9);
  h = fmix32(h ^ (n >>> 0));
  h = fmix32((h + hi) ^ Math.imul(salt, 0x27d4eb2f));
  return h;
}

export const unit = (h: number): number => h / 0x1_0000_0000;

/** mulberry32: a small seeded PRNG returning uint32s. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const authorHandle = (i: number): string => `${ADJECTIVES[i % 10]}_${ANIMALS[Math.floor(i / 10) % 5]}`;
const HANDLES = new Set(Array.from({ length: AUTHORS }, (_, i) => authorHandle(i)));

export type PostStatus = DemoPost['status'];
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
function shapeOf(seed: number, id: number, external: boolean, heavyVideos = false): PostShape {
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
  const video = unit(hash(seed, id, SALT.media + 100)) < (heavyVideos ? 0.5 : 0.05) ? form(false) : undefined;
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

export interface ContentOptions {
  seed: number;
  posts: number;
  url: string;
  mediaBaseUrl: string | undefined;
  /** Half the public posts carry a 1-3 MiB video (the media-heavy benchmark, issue 17); default 5% of 0.2-1.5 MB. */
  heavyVideos?: boolean;
}

/** Pure functions from (seed, posts, url) to everything the platform serves. */
export class DemoContent {
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
    const shape = shapeOf(seed, id, mediaBaseUrl !== undefined, this.#o.heavyVideos);
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
      if (String(id) !== m[1] || this.status(id) !== 'public' || !shapeOf(seed, id, false, this.#o.heavyVideos).video) return undefined;
      const size = this.#o.heavyVideos ? 1024 * 1024 + (h % (2 * 1024 * 1024)) : 200 * 1024 + (h % (1300 * 1024));
      return withMagic(randomBytes(h, size), MP4_HEAD);
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
