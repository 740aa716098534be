import dc from 'node:diagnostics_channel';
import { unlink } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { LifeboatError, RetryableFetchError } from '../../config/errors.js';
import type { BodySource, Capture } from '../../storage/warc/capture.js';
import type { BandwidthCap } from './bandwidth-cap.js';
import { bodyStoreStage, digestStage, responseHeadStage, sizeLimitStage, throttleStage, totalTimeoutStage, type CaptureParts, type Exchange, type MemoryBudget, type Stage } from './capture-stages.js';

/**
 * HTTP capture with undici (ARCHITECTURE.md "One ID"). One request, no redirects
 * followed here (the caller records each hop). The request head is taken from undici's own
 * `undici:client:sendHeaders` diagnostics channel, so the WARC request record holds the bytes
 * that were really sent; the response head is rebuilt from the raw header list as received.
 * The body is hashed on the way and spooled: in memory up to `spoolThresholdBytes` while the
 * bodies being received in memory stay under `memoryBudgetBytes` in all, else to a temporary file.
 * Each of these concerns is one stage (capture-stages.ts); `fetch` composes them over undici's
 * dispatch handler.
 */
export interface HttpCaptureOptions {
  userAgent: string;
  spoolDir: string;
  /** The socket factory (the scope guard's connector re-checks every address before connecting). */
  connector?: import('undici').buildConnector.connector;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  maxBodyBytes: number;
  spoolThresholdBytes?: number;
  /** Bodies being received in memory, all requests together; past it a body goes to a spool file. */
  memoryBudgetBytes?: number;
  connections?: number;
  /** `--max-bandwidth` (issue 14): every body chunk is charged to it, and reading pauses while it is ahead. */
  bandwidthCap?: BandwidthCap;
}

export interface FetchRequest {
  url: string;
  headers?: Record<string, string>;
  /** A lower body limit for this request (robots.txt: RFC 9309's 500 KiB); the rest is not read. */
  maxBodyBytes?: number;
}

const kCapture = Symbol('lifeboat.capture');

interface CaptureHandler extends Dispatcher.DispatchHandler {
  [kCapture]: (head: string, socket: Socket) => void;
}

dc.subscribe('undici:client:sendHeaders', (message) => {
  const { request, headers, socket } = message as { request: object; headers: string; socket: Socket };
  const sym = Object.getOwnPropertySymbols(request).find((s) => s.description === 'handler');
  const handler = sym ? (request as Record<symbol, unknown>)[sym] : undefined;
  if (handler && typeof handler === 'object' && kCapture in handler) (handler as CaptureHandler)[kCapture](headers, socket);
});

export class HttpCapturer {
  readonly #opts: Required<Omit<HttpCaptureOptions, 'connector' | 'bandwidthCap'>> & Pick<HttpCaptureOptions, 'connector' | 'bandwidthCap'>;
  readonly #agent: Agent;
  /** Body bytes being received in memory right now (all requests). */
  readonly #budget: MemoryBudget;

  constructor(options: HttpCaptureOptions) {
    // 4 MiB, within a 64 MiB budget for all bodies being received: a medium of a few MiB is read
    // once, hashed in the same pass and written once into the WARC (as stored blocks that point
    // into it). Spooling it instead (1 MiB threshold before issue 17) added a file write, a read
    // back and a copy. The budget bounds memory however many requests are in flight.
    this.#opts = { spoolThresholdBytes: 4 * 1024 * 1024, memoryBudgetBytes: 64 * 1024 * 1024, connections: 64, ...options };
    this.#budget = { used: 0, limit: this.#opts.memoryBudgetBytes };
    this.#agent = new Agent({
      connections: this.#opts.connections,
      headersTimeout: this.#opts.headersTimeoutMs,
      bodyTimeout: this.#opts.idleTimeoutMs,
      maxHeaderSize: 256 * 1024,
      connect: this.#opts.connector ?? { timeout: this.#opts.connectTimeoutMs },
    });
  }

  /** Body bytes held in memory by requests still being received (bounded by `memoryBudgetBytes`). */
  get bufferedBytes(): number {
    return this.#budget.used;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** The stages of one capture, in order (see capture-stages.ts). */
  #stages(maxBodyBytes: number): Stage[] {
    const o = this.#opts;
    const stages = [
      totalTimeoutStage(o.totalTimeoutMs),
      responseHeadStage(),
      sizeLimitStage(maxBodyBytes),
      digestStage(),
      bodyStoreStage({ dir: o.spoolDir, thresholdBytes: o.spoolThresholdBytes, budget: this.#budget }),
    ];
    return o.bandwidthCap ? [...stages, throttleStage(o.bandwidthCap)] : stages;
  }

  fetch(req: FetchRequest): Promise<Capture> {
    const url = new URL(req.url);
    const maxBodyBytes = req.maxBodyBytes === undefined ? this.#opts.maxBodyBytes : Math.min(req.maxBodyBytes, this.#opts.maxBodyBytes);
    const headers: string[] = ['user-agent', this.#opts.userAgent, 'accept-encoding', 'gzip, deflate, br'];
    for (const [k, v] of Object.entries(req.headers ?? {})) headers.push(k.toLowerCase(), v);
    if (!req.headers || !Object.keys(req.headers).some((k) => k.toLowerCase() === 'accept')) headers.push('accept', '*/*');
    return new Promise<Capture>((resolve, reject) => {
      const { handler, exchange } = composeStages(req.url, this.#stages(maxBodyBytes), resolve, reject);
      try {
        this.#agent.dispatch({ origin: url.origin, path: `${url.pathname}${url.search}`, method: 'GET', headers, headersTimeout: this.#opts.headersTimeoutMs, bodyTimeout: this.#opts.idleTimeoutMs }, handler);
      } catch (err) {
        exchange.fail(err as Error);
      }
    });
  }
}

/**
 * undici's dispatch handler for one exchange, running `stages` in order at each step: it settles
 * once — with the capture the stages put together, or with the first error. Once the body is
 * complete (or cut at the limit) it is finishing: the abort that follows a cut, and any late
 * error, must not undo a capture (or delete a spool file) about to be handed on.
 */
function composeStages(url: string, stages: Stage[], resolve: (c: Capture) => void, reject: (err: Error) => void): { handler: CaptureHandler; exchange: Exchange } {
  let settled = false;
  let finishing = false;
  let resume: (() => void) | undefined;
  const fetchedAt = new Date();
  const close = (failed: boolean): void => {
    for (const s of stages) s.close?.(ex, failed);
  };
  const ex: Exchange = {
    url,
    status: 0,
    received: 0,
    fail(err) {
      if (settled || finishing) return;
      settled = true;
      close(true);
      reject(err);
    },
  };
  const finish = async (): Promise<void> => {
    if (settled || finishing) return;
    finishing = true;
    const parts: CaptureParts = { url, method: 'GET', fetchedAt };
    try {
      for (const s of stages) await s.finish?.(ex, parts);
    } catch (err) {
      finishing = false;
      throw err;
    }
    settled = true;
    close(false);
    resolve(parts as Capture);
  };
  for (const s of stages) s.start?.(ex);
  const handler: CaptureHandler = {
    [kCapture]: (head, socket) => {
      ex.requestHead = Buffer.from(`${head}\r\n`, 'latin1');
      ex.remoteAddress = socket.remoteAddress;
    },
    onConnect(abort) {
      ex.abort = abort as (err: Error) => void;
    },
    onHeaders(status, rawHeaders, resumeFn, statusText) {
      resume = resumeFn;
      for (const s of stages) s.headers?.(ex, { status, rawHeaders, statusText });
      return true;
    },
    onData(chunk) {
      if (settled) return false;
      let data = chunk;
      for (const s of stages) if (s.cut) data = s.cut(ex, data);
      ex.received += data.length;
      let waits: Promise<void>[] | undefined;
      for (const s of stages) {
        const wait = s.data?.(ex, data);
        if (wait) (waits ??= []).push(wait);
      }
      if (ex.truncated) {
        // Keep what we have; the WARC record says WARC-Truncated: length.
        void finish().catch(ex.fail);
        ex.abort?.(new LifeboatError('body limit reached', { code: 'E_BODY_LIMIT', policy: 'give-up' }));
        return false;
      }
      if (!waits) return true;
      // A stage is ahead (the bandwidth cap, a spool file to drain): read on once all have caught up.
      void Promise.all(waits).then(() => resume?.());
      return false;
    },
    onComplete() {
      for (const s of stages) {
        const err = s.complete?.(ex);
        if (err) return ex.fail(err);
      }
      void finish().catch(ex.fail);
    },
    onError(err) {
      if (settled) return;
      const code = (err as { code?: string }).code ?? 'E_FETCH';
      if (code === 'UND_ERR_HEADERS_OVERFLOW') {
        // Headers beyond the cap will not shrink on a retry.
        ex.fail(new LifeboatError(`${url}: response headers larger than the 256 KiB limit`, { code, policy: 'give-up', cause: err }));
        return;
      }
      ex.fail(err instanceof LifeboatError ? err : new RetryableFetchError(`${url}: ${err.message}`, { code, cause: err }));
    },
  };
  return { handler, exchange: ex };
}

/** Deletes a spooled body once its records are written. */
export async function releaseBody(body: BodySource): Promise<void> {
  if (body.kind === 'file') await unlink(body.path).catch(() => undefined);
}
