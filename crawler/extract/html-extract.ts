import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { selectAll, type compile } from 'css-select';
import { DomHandler, hasChildren, isText, type AnyNode, type Document, type Element } from 'domhandler';
import { Parser } from 'htmlparser2';

/**
 * HTML parsing bounded in depth and time (issue 11 §1). htmlparser2 keeps its open elements in
 * an array it `unshift`s, so each level of nesting costs as much as all levels before it: 200k
 * nested `<div>` took 30 s of blocked event loop. Here the page is fed in 64 KiB slices with the
 * event loop free between them (Ctrl-C is heard), parsing stops at the first element nested
 * deeper than `maxDepth` (browsers also cap their trees at 512 levels) or once `deadlineMs` has
 * passed, and the selectors then run on what was parsed.
 */
const SLICE_CHARS = 64 * 1024;

class DepthCappedHandler extends DomHandler {
  depth = 0;
  tooDeep = false;
  onTooDeep: () => void = () => undefined;

  constructor(private readonly maxDepth: number) {
    super(undefined, { withStartIndices: false, withEndIndices: false });
  }

  override onopentag(name: string, attribs: Record<string, string>): void {
    if (this.tooDeep) return;
    if (++this.depth > this.maxDepth) {
      this.tooDeep = true;
      this.onTooDeep();
      return;
    }
    super.onopentag(name, attribs);
  }

  override onclosetag(): void {
    if (this.tooDeep) return;
    this.depth--;
    super.onclosetag();
  }
}

export interface BoundedDom {
  dom: Document;
  /** Why parsing stopped early, if it did. */
  problem?: string;
}

export async function parseHtmlBounded(text: string, o: { maxDepth: number; deadlineMs: number; signal?: AbortSignal | undefined }): Promise<BoundedDom> {
  const handler = new DepthCappedHandler(o.maxDepth);
  const parser = new Parser(handler);
  handler.onTooDeep = () => parser.pause();
  for (let at = 0; at < text.length; at += SLICE_CHARS) {
    parser.write(text.slice(at, at + SLICE_CHARS));
    if (handler.tooDeep) return { dom: handler.root, problem: `HTML nested deeper than ${o.maxDepth} levels: parsed up to there (${at + SLICE_CHARS >= text.length ? 'near the end' : `about character ${at}`})` };
    if (at + SLICE_CHARS < text.length) {
      await yieldToLoop();
      if (o.signal?.aborted) return { dom: handler.root, problem: 'extraction stopped: the crawl is stopping' };
      if (Date.now() > o.deadlineMs) return { dom: handler.root, problem: `HTML extraction ran out of time after character ${at + SLICE_CHARS} of ${text.length}` };
    }
  }
  parser.end();
  return { dom: handler.root };
}

/** An element's text, at most `maxChars` characters (textContent of a large page is the whole page, for each ancestor). */
export function boundedText(el: AnyNode, maxChars: number): string {
  let out = '';
  const stack: AnyNode[] = [el];
  while (stack.length > 0 && out.length < maxChars) {
    const node = stack.pop()!;
    if (isText(node)) out += node.data;
    else if (hasChildren(node)) {
      const kids = node.children;
      for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]!);
    }
  }
  return out.length > maxChars ? out.slice(0, maxChars) : out;
}

/** Matches of a compiled selector, at most `limit` of them. */
export function selectSome(query: ReturnType<typeof compile<AnyNode, Element>>, dom: Document, limit: number): Element[] {
  if (limit <= 0) return [];
  return selectAll<AnyNode, Element>(query, dom).slice(0, limit);
}
