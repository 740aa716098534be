import { open } from 'node:fs/promises';
import zlib from 'node:zlib';
import { compile, selectAll } from 'css-select';
import { textContent } from 'domutils';
import type { AnyNode, Element } from 'domhandler';
import { parseDocument } from 'htmlparser2';
import { jsonPathQuery } from './json-path.js';
import type { ExtractRules, Selector } from '../config/profile.js';
import type { Capture } from '../storage/capture.js';

/**
 * Extraction (DESIGN.md §3): decode a captured body (Content-Encoding undone, with a size cap so
 * a gzip/brotli bomb cannot exhaust memory) and apply a profile's JSONPath or CSS rules.
 * The archived bytes are never touched: this works on a decoded copy.
 */
export interface Extracted {
  fields: Record<string, unknown>;
  media: string[];
  ids: string[];
  /** The decoded body, for `missing_body` checks; undefined when not decodable. */
  text: string | undefined;
  /** Why extraction found nothing, when it failed (bad JSON, cap exceeded). */
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

function asStrings(values: unknown[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    if (typeof v === 'string' && v.length > 0) out.push(v);
    else if (typeof v === 'number' && Number.isFinite(v)) out.push(String(v));
  }
  return out;
}

function selectJson(doc: unknown, sel: Selector): unknown[] {
  if (typeof sel !== 'string') return [];
  return jsonPathQuery(doc, sel);
}

export async function extract(capture: Capture, rules: ExtractRules | undefined, type: 'json' | 'html' | 'binary', maxBytes: number): Promise<Extracted> {
  const empty: Extracted = { fields: {}, media: [], ids: [], text: undefined };
  if (type === 'binary') return empty;
  let text: string;
  try {
    text = (await decodedBody(capture, maxBytes)).toString('utf8');
  } catch (err) {
    return { ...empty, problem: `cannot decode the body: ${(err as Error).message}` };
  }
  if (!rules) return { ...empty, text };
  const out: Extracted = { fields: {}, media: [], ids: [], text };
  if (type === 'json') {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      return { ...out, problem: `not JSON: ${(err as Error).message}` };
    }
    for (const [name, sel] of Object.entries(rules.fields)) {
      const values = selectJson(doc, sel);
      if (values.length > 0) out.fields[name] = values.length === 1 ? values[0] : values;
    }
    for (const sel of rules.media) out.media.push(...asStrings(selectJson(doc, sel)));
    for (const sel of rules.ids) out.ids.push(...asStrings(selectJson(doc, sel)));
  } else {
    // htmlparser2 + css-select with compiled selectors: ~4x less CPU per page than cheerio here.
    const dom = parseDocument(text);
    const pick = (sel: Selector): string[] => {
      if (typeof sel === 'string') return [];
      return selectAll<AnyNode, Element>(compiledSelector(sel.css), dom)
        .map((el) => (sel.attr === 'text' ? textContent(el) : el.attribs[sel.attr]))
        .filter((v): v is string => typeof v === 'string' && v.length > 0);
    };
    for (const [name, sel] of Object.entries(rules.fields)) {
      const values = pick(sel);
      if (values.length > 0) out.fields[name] = values.length === 1 ? values[0] : values;
    }
    for (const sel of rules.media) out.media.push(...pick(sel));
    for (const sel of rules.ids) out.ids.push(...pick(sel));
  }
  return out;
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
