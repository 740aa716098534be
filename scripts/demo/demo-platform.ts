/**
 * The bundled demo platform: a deterministic fake social network on node:http, used by the
 * crawler's tests, `lifeboat demo` and the benchmarks.
 *
 * Every byte it serves is a pure function of (seed, posts, url, path), computed per request —
 * nothing is precomputed, so `posts: 10_000_000` costs no more memory than `posts: 100`.
 * The same functions are exposed as ground truth (`post()`, `mediaBody()`) so a test can check
 * what a crawler archived without a second source of truth.
 *
 * This file is the server (options, faults, sockets); the content is demo-content.ts and what
 * each path answers is demo-routes.ts.
 *
 * Faults are opt-in: `chaos` (5xx, resets, stalls, short bodies; never more than
 * MAX_CONSECUTIVE_CHAOS in a row on one path, so a retrying client always gets through) and
 * `rateLimit` (a global token bucket answering 429 + `Retry-After: 1`). /robots.txt is exempt
 * from both.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { DemoContent, hash, prng, unit, type DemoPost } from './demo-content.js';
import { DEFAULT_ROBOTS, jsonReply, route, textReply, type Reply, type RouteContext } from './demo-routes.js';

export type { DemoPost } from './demo-content.js';

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
  /** Half the public posts carry a 1-3 MiB video (the media-heavy benchmark). Default false. */
  heavyVideos?: boolean;
  /** Paths (e.g. `/media/img/12-0.jpg`) whose every request has its connection reset: media that can never be archived. */
  poisonPaths?: string[];
}

export interface DemoPlatformStats {
  requests: number;
  byStatus: Record<number, number>;
  chaos: number;
  rateLimited: number;
  /** path (with query) -> hits; empty when `trackPaths` is false. */
  paths: Map<string, number>;
}

export interface DemoPlatform {
  url: string;
  port: number;
  /** Closes the server, cancels stalls and destroys open sockets. */
  close(): Promise<void>;
  setChaos(chaos: DemoPlatformOptions['chaos'] | undefined): void;
  setRateLimit(r: DemoPlatformOptions['rateLimit'] | undefined): void;
  /** Paths whose every request has its connection reset from now on (poison media). */
  setPoisonPaths(paths: string[]): void;
  /**
   * A live platform (issue 14): the highest post ID becomes `posts` (what /api/v1/latest answers);
   * posts 1..old keep their content, the new ones appear. Also lowers it (a discover that goes backwards).
   */
  setPosts(posts: number): void;
  /**
   * What /api/v1/latest answers instead of `posts` (issue 21 §1); undefined: `posts` again. Above
   * `posts` it models replication lag (IDs announced that still answer 404 until `setPosts` reaches
   * them) or a glitched answer (10^15).
   */
  setLatest(latest: number | undefined): void;
  stats: DemoPlatformStats;
  post(id: number): DemoPost;
  /** The exact bytes served for a media path such as /media/img/12-0.jpg; undefined when none. */
  mediaBody(path: string): Buffer | undefined;
  /** Every absolute media URL referenced by public posts, deduplicated. Walks all IDs: O(posts). */
  publicMediaUrls(): string[];
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
  let poison = new Set(opts.poisonPaths ?? []);
  let rateLimit = opts.rateLimit;
  let bucket = rateLimit ? new TokenBucket(rateLimit.rps, rateLimit.burst ?? Math.max(1, rateLimit.rps)) : undefined;
  const chaosRandom = prng(hash(seed, 0, 0xc4a05));
  const chaosStreak = new Map<string, number>();
  const stats: DemoPlatformStats = { requests: 0, byStatus: {}, chaos: 0, rateLimited: 0, paths: new Map() };
  const sockets = new Set<Socket>();
  const stalls = new Set<NodeJS.Timeout>();
  let routes: RouteContext | undefined;

  const count = (status: number): void => {
    stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
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
    const ctx = routes!;
    let path: string;
    try {
      path = new URL(target, ctx.url).pathname;
    } catch {
      return sendNormally(req, res, textReply(400, 'bad request\n'));
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendNormally(req, res, { ...textReply(405, 'method not allowed\n'), headers: { allow: 'GET, HEAD' } });
    }
    if (path === '/robots.txt') return sendNormally(req, res, route(req, path, ctx));
    if (poison.has(path)) {
      stats.chaos++;
      return void req.socket.destroy();
    }
    if (bucket && !bucket.take()) {
      stats.rateLimited++;
      const reply = jsonReply(req, 429, { error: 'rate limited' });
      if (rateLimit?.retryAfter !== false) reply.headers['retry-after'] = '1';
      return sendNormally(req, res, reply);
    }
    const reply = route(req, path, ctx);
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
  const c = new DemoContent({ seed, posts, url: publicUrl, mediaBaseUrl: opts.mediaBaseUrl?.replace(/\/+$/, ''), heavyVideos: opts.heavyVideos ?? false });
  routes = { content: c, url: publicUrl, posts, seed, robotsTxt, hangPages };

  let closing: Promise<void> | undefined;
  return {
    url: publicUrl,
    port: address.port,
    stats,
    setPosts: (n) => {
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`posts must be a non-negative integer, got ${n}`);
      routes = { ...routes!, posts: n, content: new DemoContent({ seed, posts: n, url: publicUrl, mediaBaseUrl: opts.mediaBaseUrl?.replace(/\/+$/, ''), heavyVideos: opts.heavyVideos ?? false }) };
    },
    setLatest: (n) => {
      if (n !== undefined && (!Number.isSafeInteger(n) || n < 0)) throw new RangeError(`latest must be a non-negative integer, got ${n}`);
      const { latest: _old, ...rest } = routes!;
      routes = n === undefined ? rest : { ...rest, latest: n };
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const timer of stalls) clearTimeout(timer);
        stalls.clear();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
    setPoisonPaths(paths) {
      poison = new Set(paths);
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
    post: (id) => routes!.content.post(id),
    mediaBody: (path) => {
      const body = routes!.content.mediaBody(path);
      return body && Buffer.from(body);
    },
    publicMediaUrls: () => routes!.content.publicMediaUrls(),
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
