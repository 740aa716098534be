import { STATUS_CODES } from 'node:http';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';
import { RetryableFetchError, ScopeError, errorMessage } from '../../config/errors.js';
import type { Capture } from '../../storage/warc/capture.js';
import { sha1, toCapture, type Paused, type Pending } from './browser-records.js';

export { requestHeadFor, responseHeadFor } from './browser-records.js';

/**
 * Browser capture (issue 5): load one page in Chromium and record every network response it
 * makes as a neutral `Capture`, for the same WARC writer as HTTP captures.
 *
 * How: a CDP session on the page with the **Fetch domain at both stages**.
 * - Request stage: every request is checked by `allowRequest` (scope guard, robots) before it
 *   leaves; a refused one is failed with `BlockedByClient` and never reaches the network.
 * - Response stage: status, headers and `Fetch.getResponseBody` (the whole body), then the
 *   response is let through to the page.
 * The Network domain runs alongside for what Fetch does not say: the request headers as sent
 * (`requestWillBeSentExtraInfo`), the raw response head (`responseReceivedExtraInfo.headersText`),
 * the remote address, and which requests are still in flight (for "network idle").
 *
 * What differs from an HTTP capture (also in the README):
 * - Bodies are the **decoded** bytes: Chromium undoes Content-Encoding before CDP sees the body.
 *   So `Content-Encoding` is renamed `X-Lifeboat-Orig-Content-Encoding` and a `Content-Length`
 *   that no longer matches is renamed `X-Lifeboat-Orig-Content-Length` with the real length
 *   added. Chunked framing is removed as in HTTP capture (`X-Lifeboat-Orig-Transfer-Encoding`).
 *   Payload digests of compressed responses therefore differ from an HTTP capture of the same
 *   URL (no revisit across the two); uncompressed media digests are identical.
 * - The request head is **reconstructed**: the request line from method and URL, the headers as
 *   Chromium reports it sent them (names, values and order of the ExtraInfo event), HTTP/1.1.
 * - The HTTP cache is disabled for capture pages, so every page records all it loads (the
 *   requests carry `Cache-Control: no-cache` / `Pragma: no-cache`); repeats become revisits.
 * - Responses Chromium does not fetch over the network (data:, blob:, WebSocket frames) are not
 *   recorded; WebSockets and service workers are not supported (service workers are blocked).
 * - Bodies are held in memory (CDP returns them whole); `maxBodyBytes` cuts and marks them
 *   `WARC-Truncated: length`.
 */
export interface PageCaptureOptions {
  url: string;
  /** Resolves undefined when the request may go out, or the reason it may not. */
  allowRequest: (url: string) => Promise<string | undefined>;
  /** Network quiet this long (after `load`, nothing in flight) counts as idle. Default DEFAULT_IDLE_MS. */
  idleMs?: number;
  /** Upper bound on the wait for idle after `load`. Default 10 s. */
  idleMaxMs?: number;
  /** Upper bound on navigation (until `load`). The pool's page timeout also applies. */
  navigationTimeoutMs: number;
  maxBodyBytes: number;
  screenshot?: boolean;
  /** Runs once the page is ready to navigate (e.g. to take a politeness token). */
  beforeNavigate?: () => Promise<void>;
}

export interface BrowserCaptureResult {
  /** Every recorded response, in the order they completed. */
  captures: Capture[];
  /** The main document's final response (after redirects), when it was recorded. */
  document: Capture | undefined;
  status: number;
  finalUrl: string;
  /** `document.body.innerText` once the page went quiet. */
  renderedText: string;
  /** The rendered DOM serialised (`page.content()`), for CSS extraction. */
  html: string;
  screenshot?: Buffer;
  /** Requests refused before they left, with the reason. */
  blocked: { url: string; reason: string }[];
  /** True when the network was still busy at `idleMaxMs`. */
  idleTimedOut: boolean;
}

/**
 * Network quiet that ends a capture (after `load`, nothing in flight, no response being read).
 * Measured on the demo pages (the API answer → the image requests it names): 50 ms already
 * recorded every response, as 500 ms did. 150 ms leaves room for slower scripts at ~0.1 s a page.
 */
export const DEFAULT_IDLE_MS = 150;

/**
 * Records a page's network traffic through one CDP session, kept for the page's life: the page
 * is reused across captures (issue 17), so each capture is an epoch. `begin()` starts one with
 * fresh state; events for requests first seen in an earlier epoch (stragglers of the previous
 * page) are let through but never recorded. Between captures requests are still checked by the
 * last `allowRequest` — nothing leaves scope whether or not a capture is running.
 */
class CdpRecorder {
  readonly #cdp: CDPSession;
  #opts: PageCaptureOptions;
  #pending: Pending[] = [];
  #inFlight = new Set<string>();
  #startedAt = new Map<string, Date>();
  /** networkId → request headers as sent, one per hop (redirects add hops). */
  #requestExtra = new Map<string, Record<string, string>[]>();
  #responseExtra = new Map<string, (string | undefined)[]>();
  #remote = new Map<string, string>();
  #work = new Set<Promise<void>>();
  /** Request ids (network and Fetch) seen in this epoch, and in earlier ones or between captures (ignored). */
  #seen = new Set<string>();
  #stale = new Set<string>();
  blocked: { url: string; reason: string }[] = [];
  #lastActivity = Date.now();
  #stopped = true;
  #idleWake: (() => void) | undefined;

  constructor(cdp: CDPSession, opts: PageCaptureOptions) {
    this.#cdp = cdp;
    this.#opts = opts;
  }

  /** Starts a capture: fresh state; whatever was seen before is stale. */
  begin(opts: PageCaptureOptions): void {
    this.#opts = opts;
    for (const id of this.#seen) this.#stale.add(id);
    this.#seen = new Set();
    this.#pending = [];
    this.#inFlight = new Set();
    this.#startedAt = new Map();
    this.#requestExtra = new Map();
    this.#responseExtra = new Map();
    this.#remote = new Map();
    this.#work = new Set();
    this.blocked = [];
    this.#lastActivity = Date.now();
    this.#stopped = false;
  }

  /**
   * A ping (`sendBeacon`, `<a ping>`) sent from a document other than the one this capture loads
   * (by its Referer). A ping whose page's referrer policy trims the Referer to an origin is not
   * recorded either: it still goes out, checked against scope; a ping is not content.
   */
  #foreignPing(e: Paused): boolean {
    if (e.resourceType !== 'Ping' || this.#stopped) return false;
    const referer = Object.entries(e.request.headers).find(([k]) => k.toLowerCase() === 'referer')?.[1];
    if (referer === undefined) return false;
    const page = (u: string): string => {
      try {
        const url = new URL(u);
        return `${url.origin}${url.pathname}${url.search}`;
      } catch {
        return u;
      }
    };
    const here = page(this.#opts.url);
    return page(referer) !== here && !this.#pending.some((p) => page(p.paused.request.url) === page(referer));
  }

  /** False for an event of a request that belongs to an earlier capture. */
  #current(requestId: string | undefined): boolean {
    return requestId === undefined || !this.#stale.has(requestId);
  }

  #touch(): void {
    this.#lastActivity = Date.now();
    this.#idleWake?.();
  }

  static async attach(context: BrowserContext, page: Page, opts: PageCaptureOptions): Promise<CdpRecorder> {
    const cdp = await context.newCDPSession(page);
    const r = new CdpRecorder(cdp, opts);
    const touch = (): void => r.#touch();
    cdp.on('Network.requestWillBeSent', (e) => {
      // A request that starts between captures (e.g. a beacon on the old page's pagehide) stays stale.
      if (r.#stopped) r.#stale.add(e.requestId);
      if (r.#stopped || !r.#current(e.requestId)) return;
      r.#seen.add(e.requestId);
      r.#inFlight.add(e.requestId);
      if (e.redirectResponse?.remoteIPAddress) r.#remote.set(e.requestId, e.redirectResponse.remoteIPAddress);
      touch();
    });
    cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
      if (!r.#current(e.requestId)) return;
      const list = r.#requestExtra.get(e.requestId) ?? [];
      list.push(e.headers as Record<string, string>);
      r.#requestExtra.set(e.requestId, list);
    });
    cdp.on('Network.responseReceivedExtraInfo', (e) => {
      if (!r.#current(e.requestId)) return;
      const list = r.#responseExtra.get(e.requestId) ?? [];
      list.push(e.headersText);
      r.#responseExtra.set(e.requestId, list);
    });
    cdp.on('Network.responseReceived', (e) => {
      if (!r.#current(e.requestId)) return;
      if (e.response.remoteIPAddress) r.#remote.set(e.requestId, e.response.remoteIPAddress);
      touch();
    });
    cdp.on('Network.loadingFinished', (e) => {
      r.#inFlight.delete(e.requestId);
      touch();
    });
    cdp.on('Network.loadingFailed', (e) => {
      r.#inFlight.delete(e.requestId);
      touch();
    });
    cdp.on('Fetch.requestPaused', (e) => r.#track(r.#onPaused(e as Paused)));
    await cdp.send('Network.enable', { maxTotalBufferSize: 0, maxResourceBufferSize: 0 });
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await cdp.send('Fetch.enable', {
      patterns: [
        { urlPattern: '*', requestStage: 'Request' },
        { urlPattern: '*', requestStage: 'Response' },
      ],
    });
    return r;
  }

  #track(p: Promise<void>): void {
    const work = this.#work;
    const tracked = p.catch(() => undefined).finally(() => {
      work.delete(tracked);
      if (work === this.#work) this.#touch();
    });
    work.add(tracked);
  }

  async #onPaused(e: Paused): Promise<void> {
    const cdp = this.#cdp;
    // Between captures, or a straggler of the previous page: scope still applies, nothing is recorded.
    // Keyed by both ids: a beacon sent as the old page unloads has a Fetch id but no network id.
    // A beacon the previous page sends as it unloads can be dispatched only after this capture has
    // begun (Chromium sends keepalive requests late under load): a ping whose Referer is not a page
    // of this capture is that page's, and stale too.
    if (this.#stopped || this.#foreignPing(e)) {
      if (e.networkId !== undefined) this.#stale.add(e.networkId);
      this.#stale.add(e.requestId);
    }
    const record = !this.#stopped && this.#current(e.networkId) && this.#current(e.requestId);
    if (record) this.#seen.add(e.requestId);
    if (e.responseStatusCode === undefined && e.responseErrorReason === undefined) {
      const blocked = this.blocked;
      const reason = await this.#opts.allowRequest(e.request.url).catch((err: unknown) => errorMessage(err));
      if (reason !== undefined) {
        if (record) blocked.push({ url: e.request.url, reason });
        await cdp.send('Fetch.failRequest', { requestId: e.requestId, errorReason: 'BlockedByClient' });
        return;
      }
      if (record) this.#startedAt.set(e.requestId, new Date());
      await cdp.send('Fetch.continueRequest', { requestId: e.requestId });
      return;
    }
    if (!record || e.responseErrorReason !== undefined) {
      await cdp.send('Fetch.continueRequest', { requestId: e.requestId });
      return;
    }
    const status = e.responseStatusCode!;
    let body = Buffer.alloc(0);
    if (status < 300 || status >= 400 || status === 304) {
      try {
        const got = (await cdp.send('Fetch.getResponseBody', { requestId: e.requestId })) as { body: string; base64Encoded: boolean };
        body = Buffer.from(got.body, got.base64Encoded ? 'base64' : 'utf8');
      } catch {
        // No body to give (e.g. a redirect, HEAD, 204): record the head alone.
      }
    }
    if (this.#stopped || !this.#current(e.networkId) || !this.#current(e.requestId)) {
      await cdp.send('Fetch.continueRequest', { requestId: e.requestId });
      return;
    }
    const truncated = body.length > this.#opts.maxBodyBytes;
    if (truncated) body = body.subarray(0, this.#opts.maxBodyBytes);
    const id = e.networkId;
    const hop = id === undefined ? 0 : this.#pending.filter((p) => p.paused.networkId === id).length;
    this.#pending.push({
      paused: e,
      hop,
      body,
      truncated,
      fetchedAt: this.#startedAt.get(e.requestId) ?? new Date(),
      // Filled in `captures()`: the ExtraInfo events may arrive after this pause.
      requestHeaders: undefined,
      headersText: undefined,
      remoteAddress: undefined,
    });
    await cdp.send('Fetch.continueRequest', { requestId: e.requestId });
  }

  /**
   * Resolves true once nothing was in flight (no request, no response being read) for `idleMs`,
   * false at `maxMs`. Woken by every network event, not polled: it ends `idleMs` after the last one.
   */
  async waitForIdle(idleMs: number, maxMs: number): Promise<boolean> {
    const deadline = Date.now() + maxMs;
    try {
      for (;;) {
        const quiet = this.#inFlight.size === 0 && this.#work.size === 0;
        const now = Date.now();
        if (quiet && now - this.#lastActivity >= idleMs) return true;
        if (now >= deadline) return false;
        const wait = quiet ? Math.min(idleMs - (now - this.#lastActivity), deadline - now) : deadline - now;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.max(1, wait));
          function done(): void {
            clearTimeout(timer);
            resolve();
          }
          this.#idleWake = done;
        });
      }
    } finally {
      this.#idleWake = undefined;
    }
  }

  /** Ends the capture: waits (≤ 2 s) for responses being read; later events are not recorded. */
  async stop(): Promise<void> {
    await Promise.race([Promise.all(this.#work), new Promise((r) => setTimeout(r, 2000))]);
    this.#stopped = true;
  }

  captures(): Capture[] {
    return this.#pending.map((p) => {
      const id = p.paused.networkId;
      const reqHeaders = id !== undefined ? this.#requestExtra.get(id)?.[p.hop] : undefined;
      const headersText = id !== undefined ? this.#responseExtra.get(id)?.[p.hop] : undefined;
      const remote = id !== undefined ? this.#remote.get(id) : undefined;
      return toCapture({ ...p, requestHeaders: reqHeaders, headersText, remoteAddress: remote });
    });
  }
}


const recorders = new WeakMap<Page, Promise<CdpRecorder>>();

/** The page's recorder, attached on its first capture (Network and Fetch stay enabled after). */
async function recorderFor(page: Page, context: BrowserContext, opts: PageCaptureOptions): Promise<CdpRecorder> {
  let r = recorders.get(page);
  if (!r) {
    r = CdpRecorder.attach(context, page, opts);
    recorders.set(page, r);
    r.catch(() => recorders.delete(page));
  }
  return r;
}

/**
 * Loads `opts.url` in `page` and records it (see the module comment). The page may be one a
 * previous capture used (the pool reuses pages): it is left on about:blank after each capture,
 * so nothing of the previous page runs during the next, and its late events are dropped.
 * Throws ScopeError when the page itself was refused (e.g. a redirect out of scope),
 * RetryableFetchError when it could not be loaded. The caller (the pool) bounds the whole run
 * with its page timeout, and does not reuse a page whose capture threw.
 */
export async function capturePage(page: Page, context: BrowserContext, opts: PageCaptureOptions): Promise<BrowserCaptureResult> {
  const recorder = await recorderFor(page, context, opts);
  recorder.begin(opts);
  let stopped = false;
  try {
    await opts.beforeNavigate?.();
    let response;
    try {
      response = await page.goto(opts.url, { waitUntil: 'load', timeout: opts.navigationTimeoutMs });
    } catch (err) {
      const refused = recorder.blocked.find((b) => b.url === opts.url) ?? (/ERR_BLOCKED_BY_CLIENT/.test(errorMessage(err)) ? recorder.blocked[0] : undefined);
      if (refused) throw new ScopeError(`${opts.url}: the page led to ${refused.url}, which is refused: ${refused.reason}`, { code: 'E_SCOPE_REDIRECT' });
      throw new RetryableFetchError(`${opts.url}: the browser could not load it: ${errorMessage(err).split('\n')[0]}`, { code: 'E_BROWSER_NAVIGATION', cause: err });
    }
    if (!response) throw new RetryableFetchError(`${opts.url}: the browser got no response`, { code: 'E_BROWSER_NAVIGATION' });
    const idle = await recorder.waitForIdle(opts.idleMs ?? DEFAULT_IDLE_MS, opts.idleMaxMs ?? 10_000);
    const renderedText = String(await page.evaluate('document.body ? document.body.innerText : ""'));
    const html = await page.content();
    const screenshot = opts.screenshot ? await page.screenshot({ type: 'png' }) : undefined;
    await recorder.stop();
    stopped = true;
    const captures = recorder.captures();
    // Unload now: the next capture on this page starts from a blank page (the old one's scripts gone).
    await page.goto('about:blank', { timeout: opts.navigationTimeoutMs });
    const finalUrl = response.url();
    return {
      captures,
      document: [...captures].reverse().find((c) => c.url === finalUrl),
      status: response.status(),
      finalUrl,
      renderedText,
      html,
      ...(screenshot ? { screenshot } : {}),
      blocked: recorder.blocked,
      idleTimedOut: !idle,
    };
  } finally {
    if (!stopped) await recorder.stop().catch(() => undefined);
  }
}

/**
 * The rendered DOM as a capture-shaped value for extraction (`extract()` decodes a Capture's
 * body). Never written to a WARC: its head is synthetic.
 */
export function renderedDomCapture(result: BrowserCaptureResult): Capture {
  const data = Buffer.from(result.html, 'utf8');
  const base = result.document ?? result.captures[0];
  const responseHead = Buffer.from(`HTTP/1.1 ${result.status} ${STATUS_CODES[result.status] ?? ''}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n`, 'latin1');
  return {
    url: result.finalUrl,
    method: 'GET',
    requestHead: base?.requestHead ?? Buffer.alloc(0),
    responseHead,
    status: result.status,
    body: { kind: 'buffer', data },
    payloadDigest: sha1(data),
    blockDigest: sha1(responseHead, data),
    fetchedAt: base?.fetchedAt ?? new Date(),
    contentType: 'text/html; charset=utf-8',
  };
}
