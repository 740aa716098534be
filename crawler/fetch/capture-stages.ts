import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { LifeboatError, RetryableFetchError } from '../../config/errors.js';
import { sha1Label, type Capture } from '../../storage/warc/capture.js';
import type { BandwidthCap } from './bandwidth-cap.js';

/**
 * The stages of one HTTP capture (issue 24 §5), each one concern, composed by `HttpCapturer`
 * the way undici composes its interceptors: every stage sees the same exchange at each step of
 * the response (head, each body chunk, completion) and adds its part to the finished capture.
 * In order: the response head, the body size limit, the two digests, the body store (memory or
 * spool file), the bandwidth throttle; the total timeout spans the whole exchange.
 */

/** One request in flight, as the stages share it. */
export interface Exchange {
  readonly url: string;
  status: number;
  /** The request head as sent (undici's diagnostics channel), ending in CRLF CRLF. */
  requestHead?: Buffer;
  remoteAddress?: string;
  /** The status line and headers as received (chunked framing noted), ending in CRLF CRLF. */
  responseHead?: Buffer;
  contentLength?: number;
  contentType?: string;
  /** Body bytes passed on so far (after the size limit). */
  received: number;
  truncated?: Capture['truncated'];
  /** Ends the exchange with this error (ignored once it has settled or is finishing). */
  fail(err: Error): void;
  /** Stops undici's request (set on connect). */
  abort?(err: Error): void;
}

/** What stages add to the capture once the body is complete. */
export type CaptureParts = Partial<Capture>;

export interface Stage {
  /** The exchange begins (before the request is dispatched). */
  start?(ex: Exchange): void;
  /** The response head has arrived: `status` and the raw header list as undici gives them. */
  headers?(ex: Exchange, head: { status: number; rawHeaders: Buffer[]; statusText: string | undefined }): void;
  /** May cut a body chunk (the size limit); runs before any `data`. */
  cut?(ex: Exchange, chunk: Buffer): Buffer;
  /** Sees each body chunk; a returned promise pauses reading until it settles. */
  data?(ex: Exchange, chunk: Buffer): Promise<void> | undefined;
  /** The body ended: an error here fails the exchange instead of finishing it. */
  complete?(ex: Exchange): Error | undefined;
  /** Adds this stage's part to the capture (in stage order). */
  finish?(ex: Exchange, into: CaptureParts): Promise<void> | void;
  /** The exchange is over (`failed`: with an error): let go of what the stage holds. */
  close?(ex: Exchange, failed: boolean): void;
}

/** The response head rebuilt from the raw header list; the request head (or a stand-in) and address. */
export function responseHeadStage(): Stage {
  return {
    headers(ex, { status, rawHeaders, statusText }) {
      ex.status = status;
      let head = `HTTP/1.1 ${status} ${statusText ?? ''}\r\n`;
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        const name = rawHeaders[i]!.toString('latin1');
        const value = rawHeaders[i + 1]!.toString('latin1');
        const lower = name.toLowerCase();
        if (lower === 'content-length') ex.contentLength = Number(value);
        if (lower === 'content-type') ex.contentType = value;
        // Chunked framing is removed by undici; say so instead of claiming chunked bytes.
        head += lower === 'transfer-encoding' ? `X-Lifeboat-Orig-Transfer-Encoding: ${value}\r\n` : `${name}: ${value}\r\n`;
      }
      ex.responseHead = Buffer.from(`${head}\r\n`, 'latin1');
    },
    complete(ex) {
      if (ex.contentLength !== undefined && ex.received < ex.contentLength && !ex.truncated) {
        return new RetryableFetchError(`${ex.url}: body ended after ${ex.received} of ${ex.contentLength} bytes`, { code: 'E_SHORT_BODY' });
      }
      return undefined;
    },
    finish(ex, into) {
      const url = new URL(ex.url);
      into.requestHead = ex.requestHead ?? Buffer.from(`GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`);
      into.responseHead = ex.responseHead!;
      into.status = ex.status;
      if (ex.remoteAddress) into.remoteAddress = ex.remoteAddress;
      if (ex.truncated) into.truncated = ex.truncated;
      if (ex.contentType) into.contentType = ex.contentType;
    },
  };
}

/** Cuts the body at `maxBodyBytes`: the rest is not read, and the record says WARC-Truncated: length. */
export function sizeLimitStage(maxBodyBytes: number): Stage {
  return {
    cut(ex, chunk) {
      if (ex.received + chunk.length <= maxBodyBytes) return chunk;
      ex.truncated = 'length';
      return chunk.subarray(0, maxBodyBytes - ex.received);
    },
  };
}

/** SHA-1 of the payload (body as transferred) and of the block (response head + body), on the way. */
export function digestStage(): Stage {
  const payload = createHash('sha1');
  const block = createHash('sha1');
  return {
    headers(ex) {
      block.update(ex.responseHead!);
    },
    data(_ex, chunk) {
      payload.update(chunk);
      block.update(chunk);
      return undefined;
    },
    finish(_ex, into) {
      into.payloadDigest = sha1Label(payload.digest());
      into.blockDigest = sha1Label(block.digest());
    },
  };
}

/** Body bytes held in memory by all requests being received (one per capturer). */
export interface MemoryBudget {
  used: number;
  readonly limit: number;
}

let spoolCounter = 0;

/**
 * Where the body goes: in memory up to `thresholdBytes` while all bodies being received stay
 * within the budget (read once, hashed in the same pass, written once into the WARC); past
 * either, into a spool file in `dir`.
 */
export function bodyStoreStage(o: { dir: string; thresholdBytes: number; budget: MemoryBudget }): Stage {
  const memory: Buffer[] = [];
  /** This body's share of the budget, given back once it is complete, spooled or failed. */
  let held = 0;
  let spool: { path: string; stream: WriteStream } | undefined;
  const release = (): void => {
    o.budget.used -= held;
    held = 0;
  };
  const drained = (stream: WriteStream): Promise<void> => new Promise((res) => stream.once('drain', res));
  return {
    data(ex, chunk) {
      if (spool) return spool.stream.write(chunk) ? undefined : drained(spool.stream);
      // No copy: undici hands out views of the buffer each socket read returned, which nothing
      // reuses (client-h1 parses a copy in wasm memory; the body view points into the read).
      memory.push(chunk);
      o.budget.used += chunk.length;
      held += chunk.length;
      if (ex.received <= o.thresholdBytes && o.budget.used <= o.budget.limit) return undefined;
      const path = join(o.dir, `body-${process.pid}-${threadId}-${++spoolCounter}.tmp`);
      const s = { path, stream: createWriteStream(path) };
      spool = s;
      s.stream.on('error', (err) => {
        ex.abort?.(err);
        ex.fail(new LifeboatError(`spooling ${ex.url} to ${path} failed: ${err.message}`, { code: 'E_SPOOL', policy: 'stop', cause: err }));
      });
      const ok = s.stream.write(Buffer.concat(memory));
      memory.length = 0;
      release();
      return ok ? undefined : drained(s.stream);
    },
    async finish(ex, into) {
      if (!spool) {
        // Most bodies arrive in one chunk (already a copy of undici's): no second copy for them.
        into.body = { kind: 'buffer', data: memory.length === 1 ? memory[0]! : Buffer.concat(memory) };
        return;
      }
      const s = spool;
      await new Promise<void>((res, rej) => s.stream.end((err?: Error | null) => (err ? rej(err) : res())));
      into.body = { kind: 'file', path: s.path, length: ex.received };
      spool = undefined; // the capture owns the file now
    },
    close(_ex, failed) {
      release();
      if (failed && spool) {
        const s = spool;
        s.stream.destroy();
        void unlink(s.path).catch(() => undefined);
      }
    },
  };
}

/** `--max-bandwidth` (issue 14): every body chunk is charged to the cap, and reading pauses while it is ahead. */
export function throttleStage(cap: BandwidthCap): Stage {
  return {
    data(ex, chunk) {
      if (ex.truncated) return undefined; // the last bytes read: nothing more to pace
      const waitMs = cap.take(chunk.length);
      return waitMs > 0 ? new Promise((res) => setTimeout(res, waitMs)) : undefined;
    },
  };
}

/** No complete response within `ms` (connect, head and body together): the exchange fails, retryably. */
export function totalTimeoutStage(ms: number): Stage {
  let timer: NodeJS.Timeout | undefined;
  return {
    start(ex) {
      timer = setTimeout(() => {
        const err = new RetryableFetchError(`${ex.url}: no complete response within ${ms} ms`, { code: 'E_TOTAL_TIMEOUT' });
        ex.abort?.(err);
        ex.fail(err);
      }, ms);
    },
    close() {
      clearTimeout(timer);
    },
  };
}
