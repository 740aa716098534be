import type { Capture } from '../../storage/warc/capture.js';

/**
 * What one fetch hands the crawl, the same shape whether undici (`Fetcher`) or the browser
 * (`BrowserFetcher`) made it: what to record, what to extract from, and how it went.
 */
export interface Fetched {
  /**
   * Every response to record, in order: HTTP redirects first and the final answer last; for a
   * page, every response it loaded, as they completed. The caller owns their bodies
   * (`releaseBody` once recorded).
   */
  captures: Capture[];
  /**
   * What extraction reads: the final HTTP answer (the last of `captures`), or for a page its
   * rendered DOM as a capture-shaped value (synthetic head, never written to a WARC).
   */
  answer: Capture;
  /** The final answer's HTTP status. */
  status: number;
  /** The URL the answer came from (after redirects). */
  finalUrl: string;
  /** Requests sent, retries included. */
  attempts: number;
  /** Set when a redirect pointed somewhere the crawler may not go; `captures` holds what was recorded. */
  stopped?: string;
  /** What only a browser capture has. */
  rendered?: Rendered;
}

export interface Rendered {
  /** `document.body.innerText` once the page went quiet. */
  text: string;
  screenshot?: Buffer;
  /** Requests refused before they left, with the reason. */
  blocked: { url: string; reason: string }[];
  /** True when the network was still busy at the idle limit. */
  idleTimedOut: boolean;
}
