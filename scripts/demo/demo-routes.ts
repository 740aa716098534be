/**
 * What the demo platform answers at each path, as a `Reply` (status, headers, body) built from
 * the content (demo-content.ts): the JSON API, post pages and their JS-only shells, media with
 * ETag and Range, robots.txt, errors. Faults (chaos, rate limit) are the server's, not here.
 */
import type { IncomingMessage } from 'node:http';
import { gzipSync } from 'node:zlib';
import { fnv1a, type DemoContent, type DemoPost } from './demo-content.js';

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const JSON_TYPE = 'application/json; charset=utf-8';
export const DEFAULT_ROBOTS = 'User-agent: *\nDisallow: /admin/\n';
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

export function jsonReply(req: IncomingMessage, status: number, value: unknown): Reply {
  const raw = Buffer.from(JSON.stringify(value));
  const headers: Record<string, string> = { 'content-type': JSON_TYPE, vary: 'Accept-Encoding' };
  if (!acceptsGzip(req)) return { status, headers, body: raw };
  return { status, headers: { ...headers, 'content-encoding': 'gzip' }, body: gzipSync(raw) };
}

export const textReply = (status: number, text: string, type = 'text/plain; charset=utf-8'): Reply => ({
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

/** What the routes need besides the request: the content, the public URL and the platform's settings. */
export interface RouteContext {
  content: DemoContent;
  url: string;
  posts: number;
  /** What /api/v1/latest answers when it is not `posts` (a lagging or glitched platform). */
  latest?: number;
  seed: number;
  robotsTxt: string;
  hangPages: ReadonlySet<number>;
}

export function route(req: IncomingMessage, path: string, ctx: RouteContext): Reply {
  const { content: c, url, posts, seed, robotsTxt, hangPages } = ctx;
  if (path === '/robots.txt') return textReply(200, robotsTxt);
  if (path === '/api/v1/latest') return jsonReply(req, 200, { max_id: ctx.latest ?? posts });
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
}
