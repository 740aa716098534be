import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';
import { InputError, LifeboatError, RetryableFetchError, errorMessage } from '../../config/errors.js';
import { silentLogger, type Logger } from '../../config/logger.js';

/**
 * A pool of Chromium browser contexts (issue 5): one browser process, `contexts` contexts used
 * one page each, reused from capture to capture, so at most `contexts` pages are open at once. A context is reused for
 * `pagesPerContext` pages, then closed and replaced (Chromium's memory grows with use). The
 * browser is launched on first use and again after it crashes or is killed
 * (`browser.on('disconnected')`): pages in flight then fail with a RetryableFetchError and the
 * next page gets a fresh browser. A page that does not finish within its timeout is abandoned —
 * its context is closed (and the browser too, if even that hangs) — and the caller gets a
 * RetryableFetchError, so the crawl's retry rules apply.
 *
 * The pool owns the browser and its contexts; `close()` ends them. It never reads argv or the
 * environment: the CLI resolves `--chromium` / `LIFEBOAT_CHROMIUM` and passes `executablePath`.
 */
export const DEFAULT_CHROMIUM = '/usr/bin/chromium';

/** Flags every launch gets: no sandbox (containers run as root), and nothing that phones home. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-dev-shm-usage',
  '--disable-default-apps',
  '--disable-extensions',
  '--metrics-recording-only',
  '--mute-audio',
] as const;

export interface BrowserPoolOptions {
  /** Chromium (or Chrome) executable. Default `/usr/bin/chromium`. */
  executablePath?: string;
  /** Contexts, i.e. pages open at once. Default 2. */
  contexts?: number;
  /** Pages a context serves before it is replaced. Default 50. */
  pagesPerContext?: number;
  /** More command-line flags (e.g. `--host-resolver-rules=...`). */
  extraArgs?: string[];
  /** Options for every new context; the pool adds `serviceWorkers: 'block'`. */
  contextOptions?: BrowserContextOptions;
  /** Appended to Chromium's own User-Agent (the crawler identifies itself). */
  userAgentSuffix?: string;
  /** How long a launch may take. Default 30 s. */
  launchTimeoutMs?: number;
  logger?: Logger;
}

export interface PageRun {
  /** Abandon the page after this long (RetryableFetchError `E_BROWSER_TIMEOUT`). */
  timeoutMs: number;
  /** Checked before the page starts; a page already running finishes or times out. */
  signal?: AbortSignal;
}

interface Slot {
  context: BrowserContext | undefined;
  /** The context's page, reused from one run to the next (issue 17: opening one cost ~0.15 s). */
  page: Page | undefined;
  browser: Browser | undefined;
  pages: number;
}

const CLOSE_GRACE_MS = 5000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]);
}

/** Throws an InputError naming the fix when `path` is not an executable file. */
export async function checkChromium(path: string): Promise<void> {
  try {
    await access(path, constants.X_OK);
  } catch {
    throw new InputError(
      `no Chromium at ${path}: install it (apt-get install -y chromium) or point to a browser with --chromium PATH (or LIFEBOAT_CHROMIUM)`,
      { code: 'E_NO_CHROMIUM' },
    );
  }
}

export class BrowserPool {
  readonly #executablePath: string;
  readonly #pagesPerContext: number;
  readonly #args: string[];
  readonly #contextOptions: BrowserContextOptions;
  readonly #userAgentSuffix: string | undefined;
  readonly #launchTimeoutMs: number;
  readonly #log: Logger;
  readonly #free: Slot[] = [];
  readonly #waiters: ((slot: Slot) => void)[] = [];
  /** Page runs in progress per browser, so a retired browser is closed only when idle. */
  readonly #busy = new Map<Browser, number>();
  readonly #retired = new Set<Browser>();
  #browser: Promise<{ browser: Browser; userAgent: string | undefined }> | undefined;
  #closed = false;
  #launches = 0;
  #pagesDone = 0;

  constructor(options: BrowserPoolOptions = {}) {
    const { executablePath = DEFAULT_CHROMIUM, contexts = 2, pagesPerContext = 50, extraArgs = [], contextOptions = {}, launchTimeoutMs = 30_000 } = options;
    if (!Number.isInteger(contexts) || contexts < 1) throw new InputError(`browser concurrency must be a positive integer, got ${contexts}`);
    if (!Number.isInteger(pagesPerContext) || pagesPerContext < 1) throw new InputError(`pages per context must be a positive integer, got ${pagesPerContext}`);
    this.#executablePath = executablePath;
    this.#pagesPerContext = pagesPerContext;
    this.#args = [...CHROMIUM_ARGS, ...extraArgs];
    this.#contextOptions = contextOptions;
    this.#userAgentSuffix = options.userAgentSuffix;
    this.#launchTimeoutMs = launchTimeoutMs;
    this.#log = (options.logger ?? silentLogger).child('browser');
    for (let i = 0; i < contexts; i++) this.#free.push({ context: undefined, page: undefined, browser: undefined, pages: 0 });
  }

  /** How many times a browser was launched (more than 1 means it was restarted). */
  get launches(): number {
    return this.#launches;
  }

  get pagesDone(): number {
    return this.#pagesDone;
  }

  /**
   * Runs `fn` with the page of a pooled context: the same page serves the context's runs one
   * after another (`fn` leaves it ready for the next, e.g. on about:blank); a run that throws or
   * times out takes its context (and page) with it. Waits for a free context; throws
   * RetryableFetchError when the page hangs past `timeoutMs`, crashes, or the browser dies.
   */
  async withPage<T>(fn: (page: Page, context: BrowserContext) => Promise<T>, run: PageRun): Promise<T> {
    const slot = await this.#acquire();
    try {
      return await this.#runInSlot(slot, fn, run);
    } finally {
      this.#release(slot);
    }
  }

  async #runInSlot<T>(slot: Slot, fn: (page: Page, context: BrowserContext) => Promise<T>, run: PageRun): Promise<T> {
    run.signal?.throwIfAborted();
    const { browser, userAgent } = await this.#launch();
    this.#busy.set(browser, (this.#busy.get(browser) ?? 0) + 1);
    // One race covers everything after launch: a killed browser can leave newContext/newPage pending forever.
    let timer: NodeJS.Timeout | undefined;
    let onGone: (() => void) | undefined;
    let rejectFailure: (err: Error) => void = () => undefined;
    const failure = new Promise<never>((_, reject) => {
      rejectFailure = reject;
      timer = setTimeout(() => reject(new RetryableFetchError(`page did not finish within ${run.timeoutMs} ms; abandoned`, { code: 'E_BROWSER_TIMEOUT' })), run.timeoutMs);
      onGone = () => reject(new RetryableFetchError('the browser went away (crashed or was killed)', { code: 'E_BROWSER_GONE' }));
      browser.on('disconnected', onGone);
      if (!browser.isConnected()) onGone();
    });
    failure.catch(() => undefined);
    let work: Promise<T> | undefined;
    let onCrash: (() => void) | undefined;
    let crashed: Page | undefined;
    try {
      const context = await Promise.race([this.#contextFor(slot, browser, userAgent), failure]);
      const page =
        slot.page && !slot.page.isClosed()
          ? slot.page
          : await Promise.race([
              context.newPage().catch((err: unknown) => {
                throw new RetryableFetchError(`cannot open a browser page: ${errorMessage(err)}`, { code: 'E_BROWSER_GONE', cause: err });
              }),
              failure,
            ]);
      slot.page = page;
      slot.pages++;
      onCrash = () => rejectFailure(new RetryableFetchError('the page crashed', { code: 'E_PAGE_CRASH' }));
      crashed = page;
      page.on('crash', onCrash);
      work = fn(page, context);
      const result = await Promise.race([work, failure]);
      this.#pagesDone++;
      return result;
    } catch (err) {
      work?.catch(() => undefined);
      // An abandoned, crashed or half-dead page: do not reuse its context.
      await this.#dropContext(slot);
      if (err instanceof LifeboatError) throw err;
      if (!browser.isConnected()) throw new RetryableFetchError(`the browser went away: ${errorMessage(err)}`, { code: 'E_BROWSER_GONE', cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
      if (onGone) browser.off('disconnected', onGone);
      if (crashed && onCrash) crashed.off('crash', onCrash);
      this.#leave(browser);
    }
  }

  async #contextFor(slot: Slot, browser: Browser, userAgent: string | undefined): Promise<BrowserContext> {
    if (slot.context && (slot.browser !== browser || slot.pages >= this.#pagesPerContext)) await this.#dropContext(slot);
    if (!slot.context) {
      try {
        slot.context = await browser.newContext({ serviceWorkers: 'block', ...(userAgent ? { userAgent } : {}), ...this.#contextOptions });
      } catch (err) {
        throw new RetryableFetchError(`cannot open a browser context: ${errorMessage(err)}`, { code: 'E_BROWSER_GONE', cause: err });
      }
      slot.browser = browser;
      slot.pages = 0;
    }
    return slot.context;
  }

  /**
   * Closes a slot's context. If that hangs (a renderer spinning, or a starved machine), the
   * browser is retired: new pages go to a new browser, and the old one is closed once its last
   * page is done — never killed under pages that are still working.
   */
  async #dropContext(slot: Slot): Promise<void> {
    const { context, browser } = slot;
    slot.context = undefined;
    slot.page = undefined;
    slot.browser = undefined;
    slot.pages = 0;
    if (!context || !browser?.isConnected()) return;
    const closed = await withTimeout(context.close().then(() => true, () => true), CLOSE_GRACE_MS);
    if (!closed) await this.#retire(browser);
  }

  async #retire(browser: Browser): Promise<void> {
    if (this.#retired.has(browser)) return;
    this.#log.log('warn', 'a browser context did not close in time; retiring this browser (a new one takes the next pages)');
    this.#retired.add(browser);
    if (this.#browser && (await this.#browser.catch(() => undefined))?.browser === browser) this.#browser = undefined;
    if ((this.#busy.get(browser) ?? 0) <= 1) void this.#closeRetired(browser);
  }

  /** A page run on `browser` ended; a retired browser closes with its last page. */
  #leave(browser: Browser): void {
    const left = (this.#busy.get(browser) ?? 1) - 1;
    if (left > 0) {
      this.#busy.set(browser, left);
      return;
    }
    this.#busy.delete(browser);
    if (this.#retired.has(browser)) void this.#closeRetired(browser);
  }

  async #closeRetired(browser: Browser): Promise<void> {
    this.#retired.delete(browser);
    await withTimeout(browser.close().catch(() => undefined), 30_000);
  }

  /** The running browser; a new one when there is none or it has disconnected. */
  async #launch(): Promise<{ browser: Browser; userAgent: string | undefined }> {
    for (;;) {
      if (this.#closed) throw new LifeboatError('the browser pool is closed', { code: 'E_BROWSER_CLOSED', policy: 'stop' });
      this.#browser ??= this.#startBrowser();
      const current = this.#browser;
      let entry;
      try {
        entry = await current;
      } catch (err) {
        if (this.#browser === current) this.#browser = undefined;
        throw err;
      }
      if (entry.browser.isConnected()) return entry;
      if (this.#browser === current) this.#browser = undefined;
    }
  }

  async #startBrowser(): Promise<{ browser: Browser; userAgent: string | undefined }> {
    await checkChromium(this.#executablePath);
    let browser: Browser;
    try {
      // Signals belong to the CLI (Ctrl-C finishes the IDs in flight); the pool's owner closes the browser.
      browser = await chromium.launch({
        executablePath: this.#executablePath,
        headless: true,
        args: this.#args,
        timeout: this.#launchTimeoutMs,
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
      });
    } catch (err) {
      throw new RetryableFetchError(`cannot start Chromium (${this.#executablePath}): ${errorMessage(err).split('\n')[0]}; check it runs, or use --chromium PATH`, {
        code: 'E_BROWSER_LAUNCH',
        cause: err,
      });
    }
    this.#launches++;
    const entry = { browser, userAgent: undefined as string | undefined };
    browser.on('disconnected', () => {
      if (!this.#closed) this.#log.log('warn', 'the browser disconnected (crashed or killed); the next page starts a new one');
      void this.#browser?.then(
        (b) => {
          if (b.browser === browser) this.#browser = undefined;
        },
        () => undefined,
      );
    });
    if (this.#userAgentSuffix) {
      try {
        const session = await browser.newBrowserCDPSession();
        const version = (await session.send('Browser.getVersion')) as { userAgent: string };
        await session.detach();
        entry.userAgent = `${version.userAgent} ${this.#userAgentSuffix}`;
      } catch {
        // keep Chromium's own User-Agent
      }
    }
    this.#log.log('info', `launched Chromium ${browser.version()} (${this.#executablePath})`, { launches: this.#launches });
    return entry;
  }

  #acquire(): Promise<Slot> {
    const slot = this.#free.pop();
    if (slot) return Promise.resolve(slot);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #release(slot: Slot): void {
    const next = this.#waiters.shift();
    if (next) next(slot);
    else this.#free.push(slot);
  }

  /** Closes every context and the browser. Pages still running fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const current = this.#browser;
    this.#browser = undefined;
    const entry = await current?.catch(() => undefined);
    if (entry) await withTimeout(entry.browser.close().catch(() => undefined), 10_000);
    for (const b of [...this.#retired]) await this.#closeRetired(b);
  }
}

/**
 * A second gate under the CDP request check: Chromium's own resolver answers NOTFOUND for every
 * host outside `hosts`, so nothing the page does outside the request pipeline (preconnect, DNS
 * prefetch) reaches another host either. Wildcard entries (`*.example.org`) are kept as patterns.
 */
export function hostResolverRules(hosts: string[]): string {
  const keep = hosts.map((h) => h.trim().replace(/\.+$/, '')).filter((h) => /^[A-Za-z0-9.*:[\]_-]+$/.test(h));
  return `--host-resolver-rules=MAP * ~NOTFOUND${keep.map((h) => `, EXCLUDE ${h}`).join('')}`;
}
