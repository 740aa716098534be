import { Lexer, Marked, type Token } from 'marked';

/**
 * Image and link URLs of a markdown text (Lemmy's `post.body`, a forum's raw post), found by
 * marked's lexer (CommonMark + GFM: inline, reference-style and autolinks, images inside links,
 * lists and tables). Raw HTML inside the markdown is not read. The URLs come back as written:
 * the caller resolves them against the capture URL.
 */
export type MarkdownUrlKind = 'images' | 'links' | 'all';

/** Markdown longer than this is read up to here (a post body is kilobytes; the lexer is linear but not free). */
export const MAX_MARKDOWN_CHARS = 1024 * 1024;

const walker = new Marked();

export interface MarkdownUrls {
  urls: string[];
  /** Set when the text was longer than MAX_MARKDOWN_CHARS and only its start was read. */
  cut?: boolean;
}

/** The URLs of `kind` in `text`, in document order, each once, at most `limit`. */
export function markdownUrls(text: string, kind: MarkdownUrlKind, limit: number): MarkdownUrls {
  const cut = text.length > MAX_MARKDOWN_CHARS;
  const tokens = Lexer.lex(cut ? text.slice(0, MAX_MARKDOWN_CHARS) : text, { gfm: true });
  const found = new Set<string>();
  walker.walkTokens(tokens, (token: Token) => {
    if (found.size >= limit) return;
    const wanted = token.type === 'image' ? kind !== 'links' : token.type === 'link' ? kind !== 'images' : false;
    const href = (token as { href?: unknown }).href;
    if (wanted && typeof href === 'string' && href.length > 0) found.add(href);
  });
  return cut ? { urls: [...found], cut } : { urls: [...found] };
}
