/**
 * A small hostile platform for the reliability and security suites (issue 7). It serves a plain
 * post API on 127.0.0.1 — `/api/v1/posts/{id}` (JSON), `/p/{id}` (HTML), `/media/{id}.jpg` —
 * and lets a test replace any answer with a hostile one: bombs, endless bodies, redirect loops,
 * huge headers, raw bytes written straight to the socket. The demo platform
 * (scripts/demo/demo-platform.ts) stays the ground truth for the ordinary faults (5xx, resets, stalls,
 * short bodies, 429); this server covers what a well-behaved platform never does.
 *
 * Loopback only: it binds 127.0.0.1 (or another 127.x address, as a canary) and is never pointed anywhere else.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type Plan =
  /** An ordinary answer. */
  | { kind: 'reply'; status?: number; headers?: Record<string, string>; body?: Buffer | string }
  /** Exactly these bytes on the socket (head included), then close, reset, or keep the socket open. */
  | { kind: 'raw'; bytes: Buffer; then: 'end' | 'destroy' | 'hold' }
  /** A 200 whose body never ends: `chunk` again and again, every `intervalMs` (0: as fast as the socket takes it). */
  | { kind: 'endless'; chunk?: Buffer; intervalMs?: number; headers?: Record<string, string> }
  /** Header lines without end (each `X-Filler-N: …`), never a blank line. */
  | { kind: 'endless-headers' }
  /** Never answer at all. */
  | { kind: 'hang' };

export type Route = (path: string, hit: number) => Plan | undefined;

export interface HostileServer {
  url: string;
  port: number;
  /** Requests per path (query included). */
  hits: Map<string, number>;
  /** Bytes written by endless answers (to show they were cut off). */
  readonly endlessBytes: number;
  setRoute(route: Route | undefined): void;
  close(): Promise<void>;
}

export function postJson(id: number, base: string, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ id, author: { handle: `user${id % 7}` }, text: `post ${id}`, media: [{ url: `${base}/media/${id}.jpg` }], ...extra }));
}

export function mediaBytes(id: number): Buffer {
  return Buffer.from(`JPEG-bytes-of-${id}-`.repeat(20));
}

function pageHtml(id: number): string {
  return `<!doctype html><html><body><p>post ${id}</p><img class="media" src="/media/${id}.jpg"></body></html>`;
}

export async function startHostileServer(options: { route?: Route; host?: string } = {}): Promise<HostileServer> {
  const host = options.host ?? '127.0.0.1';
  let route = options.route;
  const hits = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let endlessBytes = 0;
  let base = '';

  const defaultPlan = (path: string): Plan => {
    let m = /^\/api\/v1\/posts\/(\d+)$/.exec(path);
    if (m) return { kind: 'reply', headers: { 'content-type': 'application/json' }, body: postJson(Number(m[1]), base) };
    m = /^\/p\/(\d+)$/.exec(path);
    if (m) return { kind: 'reply', headers: { 'content-type': 'text/html; charset=utf-8' }, body: pageHtml(Number(m[1])) };
    m = /^\/media\/(\d+)\.jpg$/.exec(path);
    if (m) return { kind: 'reply', headers: { 'content-type': 'image/jpeg' }, body: mediaBytes(Number(m[1])) };
    if (path === '/robots.txt') return { kind: 'reply', headers: { 'content-type': 'text/plain' }, body: 'User-agent: *\nDisallow:\n' };
    return { kind: 'reply', status: 404, headers: { 'content-type': 'application/json' }, body: '{"error":"not found"}' };
  };

  const serve = (req: IncomingMessage, res: ServerResponse, plan: Plan): void => {
    const socket = req.socket;
    switch (plan.kind) {
      case 'reply': {
        const body = typeof plan.body === 'string' ? Buffer.from(plan.body) : (plan.body ?? Buffer.alloc(0));
        res.writeHead(plan.status ?? 200, { ...plan.headers, 'content-length': String(body.length) });
        res.end(body);
        return;
      }
      case 'raw':
        socket.write(plan.bytes, () => {
          if (plan.then === 'end') socket.end();
          else if (plan.then === 'destroy') socket.destroy();
        });
        return;
      case 'endless': {
        const chunk = plan.chunk ?? Buffer.alloc(64 * 1024, 0x61);
        res.writeHead(200, { 'content-type': 'application/octet-stream', ...plan.headers });
        const pump = (): void => {
          while (!res.destroyed) {
            endlessBytes += chunk.length;
            const ok = res.write(chunk);
            if (plan.intervalMs) {
              const t = setTimeout(() => {
                timers.delete(t);
                pump();
              }, plan.intervalMs);
              timers.add(t);
              return;
            }
            if (!ok) {
              res.once('drain', pump);
              return;
            }
          }
        };
        pump();
        return;
      }
      case 'endless-headers': {
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n');
        let n = 0;
        const line = `: ${'h'.repeat(1000)}\r\n`;
        const pump = (): void => {
          while (!socket.destroyed) {
            endlessBytes += line.length;
            if (!socket.write(`X-Filler-${n++}${line}`)) {
              socket.once('drain', pump);
              return;
            }
          }
        };
        pump();
        return;
      }
      case 'hang':
        return;
    }
  };

  const server = createServer((req, res) => {
    const target = req.url ?? '/';
    const hit = (hits.get(target) ?? 0) + 1;
    hits.set(target, hit);
    const path = new URL(target, 'http://x').pathname;
    serve(req, res, route?.(path, hit) ?? defaultPlan(path));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('hostile server: unexpected address');
  base = `http://${host}:${address.port}`;
  let closing: Promise<void> | undefined;
  return {
    url: base,
    port: address.port,
    hits,
    get endlessBytes() {
      return endlessBytes;
    },
    setRoute(next) {
      route = next;
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

/** A profile (YAML) for the hostile server or the demo platform, with small timeouts so faults cost little time. */
export function faultProfile(o: { name?: string; politeness?: Record<string, number | string>; media?: boolean; page?: boolean } = {}): string {
  const politeness = { concurrency: 8, per_host_concurrency: 8, rate: 2000, robots: 'obey', max_attempts: 8, timeout_ms: 800, idle_timeout_ms: 500, connect_timeout_ms: 500, ...o.politeness };
  const pol = Object.entries(politeness).map(([k, v]) => `${k}: ${v}`).join(', ');
  return [
    `name: ${o.name ?? 'demo'}`,
    'base_url: http://127.0.0.1:8080',
    'ids: {codec: integer}',
    'captures:',
    '  - {name: post, url: "{base_url}/api/v1/posts/{id}", type: json}',
    ...(o.page === false ? [] : ['  - {name: page, url: "{base_url}/p/{id}", type: html, render: http, if: archived,', '     extract: {media: [{css: "img.media", attr: src}, {css: "img.avatar", attr: src}]}}']),
    'extract:',
    '  fields: {author: "$.author.handle", created_at: "$.created_at", reply_to: "$.reply_to"}',
    '  media: ["$.media[*].url", "$.author.avatar_url"]',
    '  ids: ["$.reply_to", "$.repost_of"]',
    'status: {archived: [200], missing: [404], gone: [410], restricted: [401, 403, 451]}',
    `politeness: {${pol}}`,
    `media: {fetch: ${o.media === false ? 'false' : 'true'}}`,
    '',
  ].join('\n');
}

/** Poison posts (issue 11): single responses that once stopped a crawl, or every node that claimed them. */
export type PoisonKind = 'deep-json' | 'huge-list' | 'nested-html' | 'oversize';

export const poison = {
  /** A post whose `author.handle` is nested `depth` arrays deep. */
  deepJson: (id: number, base: string, depth = 5_000): Buffer =>
    Buffer.from(`{"id":${id},"author":{"handle":${'['.repeat(depth)}"x"${']'.repeat(depth)}},"text":"post ${id}","media":[{"url":"${base}/media/${id}.jpg"}]}`),
  /** A post with `n` media objects (`$.media[*].url` selects them all). */
  hugeList: (id: number, base: string, n = 200_000): Buffer => {
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(`{"url":"${base}/media/${id}-${i}.jpg"}`);
    return Buffer.from(`{"id":${id},"author":{"handle":"user${id % 7}"},"text":"post ${id}","media":[${parts.join(',')}]}`);
  },
  /** A page with `depth` nested `<div>`s after an ordinary media image. */
  nestedHtml: (id: number, depth = 200_000): Buffer =>
    Buffer.from(`<!doctype html><html><body><p>post ${id}</p><img class="media" src="/media/${id}.jpg">${'<div>'.repeat(depth)}deep${'</div>'.repeat(depth)}</body></html>`),
  /** A JSON post of `bytes` bytes (a long `text`). */
  oversize: (id: number, bytes: number): Buffer => {
    const head = `{"id":${id},"author":{"handle":"user${id % 7}"},"text":"`;
    return Buffer.concat([Buffer.from(head), Buffer.alloc(Math.max(0, bytes - head.length - 2), 0x61), Buffer.from('"}')]);
  },
};

/** A route serving the poison of `kinds` (by post ID); the rest is the ordinary platform. Bodies are built once. */
export function poisonRoute(kinds: Map<number, PoisonKind>, base: () => string, o: { oversizeBytes?: number } = {}): Route {
  const cache = new Map<string, Buffer>();
  const once = (key: string, make: () => Buffer): Buffer => {
    let b = cache.get(key);
    if (!b) cache.set(key, (b = make()));
    return b;
  };
  const json = { 'content-type': 'application/json' };
  return (path) => {
    const post = /^\/api\/v1\/posts\/(\d+)$/.exec(path);
    const page = /^\/p\/(\d+)$/.exec(path);
    const id = Number((post ?? page)?.[1]);
    const kind = kinds.get(id);
    if (!kind) return undefined;
    if (post && kind === 'deep-json') return { kind: 'reply', headers: json, body: once(path, () => poison.deepJson(id, base())) };
    if (post && kind === 'huge-list') return { kind: 'reply', headers: json, body: once(path, () => poison.hugeList(id, base())) };
    if (post && kind === 'oversize') return { kind: 'reply', headers: json, body: once(path, () => poison.oversize(id, o.oversizeBytes ?? 5 << 20)) };
    if (page && kind === 'nested-html') return { kind: 'reply', headers: { 'content-type': 'text/html' }, body: once(path, () => poison.nestedHtml(id)) };
    return undefined;
  };
}
