import { Worker } from 'node:worker_threads';
import { Lexer, Marked, type Token } from 'marked';

/**
 * Image and link URLs of a markdown text (Lemmy's `post.body`, a forum's raw post), found by
 * marked's lexer (CommonMark + GFM: inline, reference-style and autolinks, images inside links,
 * lists and tables). Raw HTML inside the markdown is not read. The URLs come back as written:
 * the caller resolves them against the capture URL.
 *
 * The lexer is not linear on hostile text (issue 21 §4: 64 KiB of `*a` takes seconds, deep `>`
 * nesting overflows the stack, deeply indented lists take gigabytes), so a text is bounded like
 * HTML: read up to MAX_MARKDOWN_CHARS, up to its first line nested deeper than `max_html_depth`,
 * and — past INLINE_MARKDOWN_CHARS — in a worker thread with a memory cap that is terminated at
 * the capture's `max_extract_ms` deadline or when the crawl stops. Each cut is a note on the ID.
 */
export type MarkdownUrlKind = 'images' | 'links' | 'all';

/** Markdown longer than this is read up to here (a post body is kilobytes). */
export const MAX_MARKDOWN_CHARS = 1024 * 1024;

/**
 * Markdown up to this long is lexed on the calling thread (the worst text found, `_a` repeated,
 * took ~50 ms at 2 KiB and ~160 ms at 8 KiB on a shared machine; a real 8 KiB post ~1 ms);
 * longer text goes to a worker the deadline can stop (a round trip costs about what lexing 8 KiB does).
 */
export const INLINE_MARKDOWN_CHARS = 2 * 1024;

/** A markdown worker's heap (the indented-list bomb takes gigabytes; a real post a few MB). */
const WORKER_HEAP_MB = 256;

const walker = new Marked();

export interface MarkdownUrls {
  urls: string[];
  /** What was cut or failed, one note each (the caller prefixes the selector). */
  notes: string[];
}

/** The URLs of `kind` in `text` by marked's lexer, in document order, each once, at most `limit`. Unbounded: see `readMarkdownUrls`. */
export function lexMarkdownUrls(text: string, kind: MarkdownUrlKind, limit: number): string[] {
  const tokens = Lexer.lex(text, { gfm: true });
  const found = new Set<string>();
  walker.walkTokens(tokens, (token: Token) => {
    if (found.size >= limit) return;
    const wanted = token.type === 'image' ? kind !== 'links' : token.type === 'link' ? kind !== 'images' : false;
    const href = (token as { href?: unknown }).href;
    if (wanted && typeof href === 'string' && href.length > 0) found.add(href);
  });
  return [...found];
}

/**
 * Where the first line nested deeper than `maxDepth` starts (-1 when none): nesting counted as
 * the block-quote and list markers opening the line (`> > - 1. `) plus its indentation by two
 * spaces a level (a list nests by indentation), an upper bound of what the lexer recurses into.
 */
export function markdownTooDeepAt(text: string, maxDepth: number): number {
  let lineStart = 0;
  let depth = 0;
  let indenting = true; // still in the line's leading whitespace
  let atStart = true; // still inside the line's run of indentation and container markers
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      lineStart = i + 1;
      depth = 0;
      indenting = true;
      atStart = true;
      continue;
    }
    if (!atStart) continue;
    if (c === 0x20 || c === 0x09) {
      if (indenting) depth += c === 0x09 ? 2 : (i - lineStart) % 2; // two spaces a level
      continue;
    }
    indenting = false;
    if (c === 0x3e) depth++; // >
    else if ((c === 0x2d || c === 0x2a || c === 0x2b) && (i + 1 === text.length || text.charCodeAt(i + 1) === 0x20 || text.charCodeAt(i + 1) === 0x09)) depth++; // - * + then a space
    else if (c >= 0x30 && c <= 0x39) {
      let j = i;
      while (j < text.length && j - i < 9 && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x39) j++;
      const d = text.charCodeAt(j);
      if ((d === 0x2e || d === 0x29) && (j + 1 === text.length || text.charCodeAt(j + 1) === 0x20)) {
        depth++;
        i = j;
      } else atStart = false;
    } else atStart = false;
    if (depth > maxDepth) return lineStart;
  }
  return -1;
}

interface Job {
  id: number;
  text: string;
  kind: MarkdownUrlKind;
  limit: number;
}
export type MarkdownWorkerReply = { id: number; urls: string[] } | { id: number; error: string };

/** The worker script: the compiled one, also when this module runs from TypeScript source (tests). */
function workerScript(): URL {
  return import.meta.url.endsWith('.ts') ? new URL('../../dist/crawler/extract/markdown-worker.js', import.meta.url) : new URL('./markdown-worker.js', import.meta.url);
}

/** Idle workers kept for the next long text; one is started per text read at the same time. */
const idle: Worker[] = [];
const MAX_IDLE = 2;
let nextJob = 1;

function takeWorker(): Worker {
  let w = idle.pop();
  if (!w) {
    const made = new Worker(workerScript(), { resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } });
    made.on('error', () => undefined); // a job's own listener reports it; an idle worker's error must not end the process
    made.on('exit', () => {
      const at = idle.indexOf(made);
      if (at >= 0) idle.splice(at, 1);
    });
    w = made;
  }
  w.ref();
  return w;
}

function giveBack(w: Worker): void {
  if (idle.length >= MAX_IDLE) {
    void w.terminate();
    return;
  }
  w.unref(); // an idle worker never keeps the process alive
  idle.push(w);
}

/** Lexes `text` in a worker; `undefined` urls with a reason when the deadline passed, the crawl stopped or the worker failed. */
function lexInWorker(job: Omit<Job, 'id'>, deadlineMs: number, signal: AbortSignal | undefined): Promise<{ urls: string[] } | { failed: string }> {
  return new Promise((resolve) => {
    const w = takeWorker();
    const id = nextJob++;
    let settled = false;
    const finish = (out: { urls: string[] } | { failed: string }, keep: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      w.off('message', onMessage);
      w.off('error', onError);
      w.off('exit', onExit);
      if (keep) giveBack(w);
      else void w.terminate();
      resolve(out);
    };
    const onMessage = (m: MarkdownWorkerReply): void => {
      if (m.id !== id) return;
      if ('error' in m) finish({ failed: m.error }, true);
      else finish({ urls: m.urls }, true);
    };
    const onError = (err: Error): void => finish({ failed: (err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY' ? `needed more than ${WORKER_HEAP_MB} MB` : err.message }, false);
    const onExit = (): void => finish({ failed: 'the markdown worker stopped' }, false);
    const onAbort = (): void => finish({ failed: 'extraction stopped: the crawl is stopping' }, false);
    const timer = setTimeout(() => finish({ failed: `not read within max_extract_ms` }, false), Math.max(0, deadlineMs - Date.now()));
    w.on('message', onMessage);
    w.on('error', onError);
    w.on('exit', onExit);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    else w.postMessage({ id, ...job } satisfies Job);
  });
}

/**
 * The URLs of `kind` in `text`, in document order, each once, at most `limit`, bounded in size,
 * depth, time and memory (see the top of this file). Never throws: what was cut is in `notes`.
 */
export async function readMarkdownUrls(text: string, kind: MarkdownUrlKind, limit: number, o: { maxDepth: number; deadlineMs: number; signal?: AbortSignal | undefined }): Promise<MarkdownUrls> {
  const notes: string[] = [];
  let md = text;
  if (md.length > MAX_MARKDOWN_CHARS) {
    md = md.slice(0, MAX_MARKDOWN_CHARS);
    notes.push(`markdown longer than ${MAX_MARKDOWN_CHARS} characters read up to there`);
  }
  const deep = markdownTooDeepAt(md, o.maxDepth);
  if (deep >= 0) {
    md = md.slice(0, deep);
    notes.push(`markdown nested deeper than ${o.maxDepth} levels: read up to there (about character ${deep})`);
  }
  if (o.signal?.aborted) return { urls: [], notes: [...notes, 'extraction stopped: the crawl is stopping'] };
  if (Date.now() > o.deadlineMs) return { urls: [], notes: [...notes, 'markdown not read: max_extract_ms spent before it'] };
  if (md.length <= INLINE_MARKDOWN_CHARS) {
    try {
      return { urls: lexMarkdownUrls(md, kind, limit), notes };
    } catch (err) {
      return { urls: [], notes: [...notes, `markdown not read: ${(err as Error).message}`] };
    }
  }
  const got = await lexInWorker({ text: md, kind, limit }, o.deadlineMs, o.signal);
  if ('urls' in got) return { urls: got.urls, notes };
  return { urls: [], notes: [...notes, `markdown of ${md.length} characters ${got.failed.startsWith('not read') ? got.failed : `not read: ${got.failed}`}: its URLs not kept`] };
}
