import { open } from 'node:fs/promises';
import zlib from 'node:zlib';
import { compile } from 'css-select';
import type { AnyNode, Document, Element } from 'domhandler';
import { jsonNesting, MAX_JSON_PARSE_DEPTH, ValueBounder, type ExtractLimits } from './extract-bounds.js';
import { boundedText, parseHtmlBounded, selectSome } from './html-extract.js';
import { jsonPathQuery } from './json-path.js';
import { pageRequisites } from './page-requisites.js';
import type { ExtractRules, RequisiteKind, Selector } from '../../config/profile.js';
import type { Capture } from '../../storage/warc/capture.js';

/**
 * Extraction (ARCHITECTURE.md "One ID"): decode a captured body (Content-Encoding undone, with a size cap so
 * a gzip/brotli bomb cannot exhaust memory) and apply a profile's JSONPath or CSS rules.
 * The archived bytes are never touched: this works on a decoded copy.
 */
export interface Extracted {
  fields: Record<string, unknown>;
  media: string[];
  ids: string[];
  /** Page requisites of an HTML capture that asked for them: absolute http(s) URLs, each once. */
  requisites: string[];
  /** The decoded body, for `missing_body` checks; undefined when not decodable. */
  text: string | undefined;
  /** What went wrong or was cut (bad JSON, a value too deep or long, too many values), one note each. */
  notes: string[];
  /** The notes in one line, when there are any. */
  problem?: string;
}

async function readCapped(capture: Capture, maxBytes: number): Promise<Buffer> {
  if (capture.body.kind === 'buffer') return capture.body.data.subarray(0, maxBytes);
  const fh = await open(capture.body.path, 'r');
  try {
    const buf = Buffer.alloc(Math.min(maxBytes, capture.body.length));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function headerValue(head: Buffer, name: string): string | undefined {
  const re = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im');
  return re.exec(head.toString('latin1'))?.[1]?.trim();
}

/** The body with its Content-Encoding undone, at most `maxBytes` decoded bytes. */
export async function decodedBody(capture: Capture, maxBytes: number): Promise<Buffer> {
  const raw = await readCapped(capture, maxBytes);
  const encoding = headerValue(capture.responseHead, 'content-encoding')?.toLowerCase();
  const opts = { maxOutputLength: maxBytes, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (!encoding || encoding === 'identity') return raw;
  if (encoding === 'gzip' || encoding === 'x-gzip') return zlib.gunzipSync(raw, opts);
  if (encoding === 'deflate') {
    try {
      return zlib.inflateSync(raw, opts);
    } catch {
      return zlib.inflateRawSync(raw, opts);
    }
  }
  if (encoding === 'br') return zlib.brotliDecompressSync(raw, { maxOutputLength: maxBytes });
  throw new Error(`unsupported Content-Encoding "${encoding}"`);
}

/** A media or ID reference longer than this is cut before it is resolved (no real media URL is that long). */
const MAX_REF_CHARS = 8192;

/** Strings and finite numbers of `values`, at most `limit`. */
function asStrings(values: unknown[], limit: number): string[] {
  const out: string[] = [];
  for (const v of values) {
    if (out.length >= limit) break;
    if (typeof v === 'string' && v.length > 0) out.push(v.slice(0, MAX_REF_CHARS));
    else if (typeof v === 'number' && Number.isFinite(v)) out.push(String(v));
  }
  return out;
}

/**
 * Applies a profile's rules to one capture. Never throws for what the response holds: a bad
 * body, a selector the document breaks, a value too deep, long or many — each ends up in
 * `notes` (and `problem`), and what could be kept is kept, cut to `limits`.
 */
export async function extract(capture: Capture, rules: ExtractRules | undefined, type: 'json' | 'html' | 'binary', limits: ExtractLimits, signal?: AbortSignal, requisites: readonly RequisiteKind[] = []): Promise<Extracted> {
  try {
    return await extractOrThrow(capture, rules, type, limits, signal, requisites);
  } catch (err) {
    // Whatever was missed above (a library's own limits, a bug): the ID's note, never the crawl's end.
    return withNotes({ fields: {}, media: [], ids: [], requisites: [], text: undefined, notes: [] }, [`extraction failed: ${(err as Error).message}`]);
  }
}

/** A fixed value put into a URL template a field holds (`{size}` of Discourse's avatar_template); undefined when a placeholder stays open. */
function filled(template: string, fill: Record<string, string | number>): string | undefined {
  const out = template.replace(/\{([^{}]*)\}/g, (whole, key: string) => (Object.prototype.hasOwnProperty.call(fill, key) ? encodeURIComponent(String(fill[key])) : whole));
  return /\{[^{}]*\}/.test(out) ? undefined : out;
}

async function extractOrThrow(capture: Capture, rules: ExtractRules | undefined, type: 'json' | 'html' | 'binary', limits: ExtractLimits, signal: AbortSignal | undefined, requisites: readonly RequisiteKind[]): Promise<Extracted> {
  const empty: Extracted = { fields: {}, media: [], ids: [], requisites: [], text: undefined, notes: [] };
  const deadlineMs = Date.now() + limits.maxMs;
  if (type === 'binary') return empty;
  let text: string;
  try {
    text = (await decodedBody(capture, limits.maxBytes)).toString('utf8');
  } catch (err) {
    return withNotes(empty, [`cannot decode the body: ${(err as Error).message}`]);
  }
  if (!rules && (type !== 'html' || requisites.length === 0)) return { ...empty, text };
  const out: Extracted = { fields: {}, media: [], ids: [], requisites: [], text, notes: [] };
  const notes: string[] = [];
  const bounder = new ValueBounder(limits);
  // A selector that fails (a stack overflow in a library, a value the walker cannot take) loses its own values only.
  const guarded = <T>(what: string, fn: () => T[]): T[] => {
    try {
      return fn();
    } catch (err) {
      notes.push(`${what}: ${(err as Error).message}`);
      return [];
    }
  };
  const keep = (name: string, values: unknown[]): void => {
    if (values.length === 0) return;
    const kept = values.length === 1 ? bounder.bound(name, values[0]) : bounder.bound(name, values);
    if (kept !== undefined) out.fields[name] = kept;
  };
  /** The values of a CSS selector's attribute (or `text`) in a parsed document. */
  const pickFrom = (what: string, dom: Document, sel: Exclude<Selector, string>, limit: number): string[] =>
    guarded(what, () =>
      selectSome(compiledSelector(sel.css ?? '*'), dom, limit)
        .map((el) => (sel.attr === 'text' ? boundedText(el, limits.maxFieldChars + 1) : el.attribs[sel.attr]?.slice(0, limits.maxFieldChars + 1)))
        .filter((v): v is string => typeof v === 'string' && v.length > 0),
    );
  const pushMedia = (refs: string[]): void => {
    for (const ref of refs) if (out.media.length < limits.maxMedia) out.media.push(ref);
  };
  let mediaSeen = 0;
  if (type === 'json') {
    const depth = jsonNesting(text, MAX_JSON_PARSE_DEPTH);
    if (depth > MAX_JSON_PARSE_DEPTH) return withNotes(out, [`JSON nested deeper than ${MAX_JSON_PARSE_DEPTH} levels: not extracted`]);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      return withNotes(out, [`not JSON: ${(err as Error).message}`]);
    }
    /** What a JSON selector gives: the JSONPath's values, or what css/markdown/fill make of the strings among them. */
    const select = async (what: string, sel: Selector, limit: number): Promise<unknown[]> => {
      const path = typeof sel === 'string' ? sel : sel.json;
      if (path === undefined) return [];
      const found = guarded(what, () => jsonPathQuery(doc, path, typeof sel === 'string' || (!sel.css && !sel.markdown) ? limit : limits.maxFieldValues));
      if (typeof sel === 'string') return found;
      const strings = found.filter((v): v is string => typeof v === 'string');
      if (sel.fill) {
        const out = strings.map((t) => filled(t, sel.fill!)).filter((v): v is string => v !== undefined);
        if (out.length < strings.length) notes.push(`${what}: ${strings.length - out.length} template(s) with a placeholder not in fill`);
        return out.slice(0, limit);
      }
      if (sel.markdown) {
        // Loaded on first use: most profiles read no markdown, and marked is a share of start-up.
        const { readMarkdownUrls } = await import('./markdown-urls.js');
        const urls: string[] = [];
        for (const md of strings) {
          if (urls.length >= limit) break;
          const got = await readMarkdownUrls(md, sel.markdown, limit - urls.length, { maxDepth: limits.maxHtmlDepth, deadlineMs, signal });
          for (const note of got.notes) notes.push(`${what}: ${note}`);
          urls.push(...got.urls);
        }
        return urls;
      }
      if (sel.css) {
        const values: string[] = [];
        for (const html of strings) {
          if (values.length >= limit) break;
          const parsed = await parseHtmlBounded(html, { maxDepth: limits.maxHtmlDepth, deadlineMs, signal });
          if (parsed.problem) notes.push(`${what}: ${parsed.problem}`);
          values.push(...pickFrom(what, parsed.dom, sel, limit - values.length));
        }
        return values;
      }
      return found.slice(0, limit);
    };
    for (const [name, sel] of Object.entries(rules?.fields ?? {})) keep(name, await select(`field ${name}`, sel, bounder.left + 1));
    for (const sel of rules?.media ?? []) {
      const found = await select(`media ${describe(sel)}`, sel, limits.maxMedia + 1);
      mediaSeen += found.length;
      pushMedia(asStrings(found, limits.maxMedia - out.media.length + 1));
    }
    for (const sel of rules?.ids ?? []) {
      out.ids.push(...asStrings(await select(`ids ${describe(sel)}`, sel, limits.maxFieldValues - out.ids.length), limits.maxFieldValues - out.ids.length));
    }
  } else {
    // htmlparser2 + css-select with compiled selectors: ~4x less CPU per page than cheerio here.
    const parsed = await parseHtmlBounded(text, { maxDepth: limits.maxHtmlDepth, deadlineMs, signal });
    if (parsed.problem) notes.push(parsed.problem);
    const pick = (what: string, sel: Selector, limit: number): string[] => (typeof sel === 'string' ? [] : pickFrom(what, parsed.dom, sel, limit));
    for (const [name, sel] of Object.entries(rules?.fields ?? {})) keep(name, pick(`field ${name}`, sel, bounder.left + 1));
    for (const sel of rules?.media ?? []) {
      const found = pick('media', sel, limits.maxMedia + 1);
      mediaSeen += found.length;
      pushMedia(found.map((v) => v.slice(0, MAX_REF_CHARS)));
    }
    for (const sel of rules?.ids ?? []) out.ids.push(...pick('ids', sel, limits.maxFieldValues - out.ids.length));
    if (requisites.length > 0) out.requisites = guarded('requisites', () => pageRequisites(parsed.dom, capture.url, requisites));
  }
  if (mediaSeen > out.media.length) notes.push(`more than ${limits.maxMedia} media references (media.max_per_post): the first ${out.media.length} kept`);
  return withNotes(out, [...notes, ...bounder.notes]);
}

/** A selector as a note names it. */
function describe(sel: Selector): string {
  if (typeof sel === 'string') return sel;
  const how = sel.css ? ` css ${sel.css}` : sel.markdown ? ` markdown ${sel.markdown}` : sel.fill ? ' fill' : '';
  return `${sel.json ?? sel.css ?? ''}${sel.json ? how : ''}`;
}

function withNotes(ex: Extracted, notes: string[]): Extracted {
  if (notes.length === 0) return ex;
  const all = [...ex.notes, ...notes];
  return { ...ex, notes: all, problem: all.join('; ') };
}

const compiledSelectors = new Map<string, ReturnType<typeof compile<AnyNode, Element>>>();

/** css-select compiles a selector into a matcher; profiles have few, so each is compiled once. */
function compiledSelector(css: string): ReturnType<typeof compile<AnyNode, Element>> {
  let q = compiledSelectors.get(css);
  if (!q) {
    q = compile<AnyNode, Element>(css);
    compiledSelectors.set(css, q);
  }
  return q;
}

/** Resolves media references against the capture URL; drops what is not http(s). */
export function resolveUrls(refs: string[], base: string): string[] {
  const out = new Set<string>();
  for (const ref of refs) {
    try {
      const u = new URL(ref.trim(), base);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        out.add(u.href.slice(0, 2048)); // kept (cut short) so the scope guard refuses it and the shard records why
        continue;
      }
      u.hash = '';
      out.add(u.href);
    } catch {
      // not a URL: nothing to fetch
    }
  }
  return [...out];
}
