import { compile } from 'css-select';
import type { AnyNode, Document, Element } from 'domhandler';
import type { RequisiteKind } from '../../config/profile.js';
import { boundedText, selectSome } from './html-extract.js';

/**
 * Page requisites (wget --page-requisites): what a captured HTML page needs to replay styled and
 * working — stylesheets, scripts, images and fonts — and, for a fetched stylesheet, what it
 * references in turn (@import, url()). Pure: URLs come back absolute (resolved against the
 * page's `<base href>` or its URL), http(s) only, each once; the crawl keeps those on its scope
 * hosts and queues them like media.
 */
type Matcher = ReturnType<typeof compile<AnyNode, Element>>;
interface Source {
  kind: RequisiteKind;
  selector: string;
  attr: string;
  /** srcset-shaped: several `URL descriptor` candidates separated by commas. */
  srcset?: boolean;
}

const SOURCES: Source[] = [
  { kind: 'stylesheets', selector: 'link[rel~="stylesheet" i][href]', attr: 'href' },
  { kind: 'stylesheets', selector: 'link[rel~="preload" i][as="style" i][href]', attr: 'href' },
  { kind: 'scripts', selector: 'script[src]', attr: 'src' },
  { kind: 'scripts', selector: 'link[rel~="modulepreload" i][href], link[rel~="preload" i][as="script" i][href]', attr: 'href' },
  { kind: 'images', selector: 'img[src], input[type="image" i][src], embed[src]', attr: 'src' },
  { kind: 'images', selector: 'img[srcset], picture source[srcset]', attr: 'srcset', srcset: true },
  { kind: 'images', selector: 'link[rel~="icon" i][href], link[rel~="apple-touch-icon" i][href], link[rel~="preload" i][as="image" i][href]', attr: 'href' },
  { kind: 'images', selector: 'video[poster]', attr: 'poster' },
  { kind: 'fonts', selector: 'link[rel~="preload" i][as="font" i][href]', attr: 'href' },
];

const compiled = new Map<string, Matcher>();
function matcher(css: string): Matcher {
  let m = compiled.get(css);
  if (!m) compiled.set(css, (m = compile<AnyNode, Element>(css)));
  return m;
}

/** At most this many requisites per page (a page with 100k `<img>` is not a page to replay). */
export const MAX_REQUISITES = 2000;
/** Inline CSS longer than this (per `<style>` or style attribute) is read up to here. */
const MAX_INLINE_CSS_CHARS = 256 * 1024;

function absolute(ref: string, base: string): string | undefined {
  const trimmed = ref.trim();
  if (trimmed === '' || trimmed.startsWith('data:') || trimmed.startsWith('#')) return undefined;
  try {
    const u = new URL(trimmed, base);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    u.hash = '';
    return u.href;
  } catch {
    return undefined;
  }
}

/** The URLs of a srcset attribute (`a.png 1x, b.png 2x`): candidates end at a comma followed by space or after a descriptor. */
export function srcsetUrls(value: string): string[] {
  return value
    .split(/,\s+|(?<=\s[\d.]+[wxh]),/)
    .map((candidate) => candidate.trim().split(/\s+/)[0] ?? '')
    .filter((u) => u.length > 0);
}

/** The requisites of a parsed HTML page of these kinds, absolute, each once, at most `limit`. */
export function pageRequisites(dom: Document, pageUrl: string, kinds: readonly RequisiteKind[], limit = MAX_REQUISITES): string[] {
  if (kinds.length === 0) return [];
  const baseHref = selectSome(matcher('base[href]'), dom, 1)[0]?.attribs.href;
  const base = (baseHref !== undefined && absolute(baseHref, pageUrl)) || pageUrl;
  const out = new Set<string>();
  const add = (ref: string): void => {
    const u = out.size < limit ? absolute(ref, base) : undefined;
    if (u) out.add(u);
  };
  for (const src of SOURCES) {
    if (!kinds.includes(src.kind)) continue;
    for (const el of selectSome(matcher(src.selector), dom, limit)) {
      const v = el.attribs[src.attr];
      if (v === undefined) continue;
      if (src.srcset) srcsetUrls(v).forEach(add);
      else add(v);
    }
  }
  // Inline CSS: <style> elements and style="" attributes hold @import and url() references too.
  const inline = [
    ...selectSome(matcher('style'), dom, limit).map((el) => boundedText(el, MAX_INLINE_CSS_CHARS)),
    ...selectSome(matcher('[style]'), dom, limit).map((el) => (el.attribs.style ?? '').slice(0, MAX_INLINE_CSS_CHARS)),
  ];
  for (const css of inline) cssReferences(css, kinds).forEach(add);
  return [...out];
}

/**
 * The references of a stylesheet of these kinds, as written (relative ones are resolved by the
 * caller against the stylesheet's URL): `@import` (stylesheets), url() inside `@font-face`
 * (fonts) and every other url() (images).
 */
export function cssReferences(css: string, kinds: readonly RequisiteKind[]): string[] {
  const text = css.replace(/\/\*[\s\S]*?(?:\*\/|$)/g, ' ');
  const out = new Set<string>();
  const want = (kind: RequisiteKind, ref: string): void => {
    if (kinds.includes(kind) && ref.trim() !== '' && !ref.trim().startsWith('data:')) out.add(ref.trim());
  };
  const fontFaces: [number, number][] = [];
  for (const m of text.matchAll(/@font-face\s*\{[^}]*\}/gi)) fontFaces.push([m.index, m.index + m[0].length]);
  const inFontFace = (at: number): boolean => fontFaces.some(([from, to]) => at >= from && at < to);
  for (const m of text.matchAll(/@import\s+(?:url\(\s*)?(["']?)([^"')\s;]+)\1/gi)) want('stylesheets', m[2]!);
  for (const m of text.matchAll(/url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)/gi)) {
    const ref = m[1] ?? m[2] ?? m[3] ?? '';
    // The @import url(...) form was taken above as a stylesheet.
    const before = text.slice(Math.max(0, m.index - 12), m.index);
    if (/@import\s*$/i.test(before)) continue;
    want(inFontFace(m.index) ? 'fonts' : 'images', ref);
  }
  return [...out];
}
