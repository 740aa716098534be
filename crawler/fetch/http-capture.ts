import { createHash, type Hash } from 'node:crypto';
import dc from 'node:diagnostics_channel';
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { threadId } from 'node:worker_threads';
import { Agent, type Dispatcher } from 'undici';
import { LifeboatError, RetryableFetchError } from '../../config/errors.js';
import { sha1Label, type BodySource, type Capture } from '../../storage/warc/capture.js';
import type { BandwidthCap } from './bandwidth-cap.js';

/**
 * HTTP capture with undici (ARCHITECTURE.md "One ID", issue: capture layer). One request, no redirects
 * followed here (the caller records each hop). The request head is taken from undici's own
 * `undici:client:sendHeaders` diagnostics channel, so the WARC request record holds the bytes
 * that were really sent; the response head is rebuilt from the raw header list as received.
 * The body is hashed on the way and spooled: in memory up to `spoolThresholdBytes` while the
 * bodies being received in memory stay under `memoryBudgetBytes` in all, else to a temporary file.
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

let spoolCounter = 0;

export class HttpCapturer {
  readonly #opts: Required<Omit<HttpCaptureOptions, 'connector' | 'bandwidthCap'>> & Pick<HttpCaptureOptions, 'connector' | 'bandwidthCap'>;
  readonly #agent: Agent;
  /** Body bytes being received in memory right now (all requests). */
  #buffered = 0;

  constructor(options: HttpCaptureOptions) {
    // 4 MiB, within a 64 MiB budget for all bodies being received: a medium of a few MiB is read
    // once, hashed in the same pass and written once into the WARC (as stored blocks that point
    // into it). Spooling it instead (1 MiB threshold before issue 17) added a file write, a read
    // back and a copy. The budget bounds memory however many requests are in flight.
    this.#opts = { spoolThresholdBytes: 4 * 1024 * 1024, memoryBudgetBytes: 64 * 1024 * 1024, connections: 64, ...options };
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
    return this.#buffered;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  fetch(req: FetchRequest): Promise<Capture> {
    const url = new URL(req.url);
    const opts = req.maxBodyBytes === undefined ? this.#opts : { ...this.#opts, maxBodyBytes: Math.min(req.maxBodyBytes, this.#opts.maxBodyBytes) };
    const headers: string[] = ['user-agent', opts.userAgent, 'accept-encoding', 'gzip, deflate, br'];
    for (const [k, v] of Object.entries(req.headers ?? {})) headers.push(k.toLowerCase(), v);
    if (!req.headers || !Object.keys(req.headers).some((k) => k.toLowerCase() === 'accept')) headers.push('accept', '*/*');

    return new Promise<Capture>((resolve, reject) => {
      let requestHead: Buffer | undefined;
      let remoteAddress: string | undefined;
      let responseHead: Buffer | undefined;
      let status = 0;
      let contentLength: number | undefined;
      let contentType: string | undefined;
      let received = 0;
      let truncated: Capture['truncated'];
      const payloadHash: Hash = createHash('sha1');
      const blockHash: Hash = createHash('sha1');
      const memory: Buffer[] = [];
      /** This body's share of `#buffered`, given back once it is complete, spooled or failed. */
      let held = 0;
      const release = (): void => {
        this.#buffered -= held;
        held = 0;
      };
      /** Counts `n` more bytes held in memory; true when this body should go to a spool file now. */
      const hold = (n: number): boolean => {
        this.#buffered += n;
        held += n;
        return received > opts.spoolThresholdBytes || this.#buffered > opts.memoryBudgetBytes;
      };
      let spool: { path: string; stream: WriteStream } | undefined;
      let abortFn: ((err: Error) => void) | undefined;
      let resumeFn: (() => void) | undefined;
      let settled = false;
      // Set once the body is complete (or cut at the limit): the abort that follows a cut, and
      // any late error, must not delete a spool file that is about to become the capture.
      let finishing = false;
      const fetchedAt = new Date();

      const cleanup = (): void => {
        clearTimeout(timer);
        release();
        if (spool) {
          const s = spool;
          s.stream.destroy();
          void unlink(s.path).catch(() => undefined);
        }
      };
      const fail = (err: Error): void => {
        if (settled || finishing) return;
        settled = true;
        cleanup();
        reject(err);
      };
      const timer = setTimeout(() => {
        const err = new RetryableFetchError(`${req.url}: no complete response within ${opts.totalTimeoutMs} ms`, { code: 'E_TOTAL_TIMEOUT' });
        if (abortFn) abortFn(err);
        fail(err);
      }, opts.totalTimeoutMs);

      const finish = async (): Promise<void> => {
        if (settled || finishing) return;
        finishing = true;
        let body: BodySource;
        if (spool) {
          const s = spool;
          try {
            await new Promise<void>((res, rej) => s.stream.end((err?: Error | null) => (err ? rej(err) : res())));
          } catch (err) {
            finishing = false;
            throw err;
          }
          body = { kind: 'file', path: s.path, length: received };
          spool = undefined;
        } else {
          // Most bodies arrive in one chunk (already a copy of undici's): no second copy for them.
          body = { kind: 'buffer', data: memory.length === 1 ? memory[0]! : Buffer.concat(memory) };
        }
        settled = true;
        clearTimeout(timer);
        release();
        resolve({
          url: req.url,
          method: 'GET',
          requestHead: requestHead ?? Buffer.from(`GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`),
          responseHead: responseHead!,
          status,
          body,
          payloadDigest: sha1Label(payloadHash.digest()),
          blockDigest: sha1Label(blockHash.digest()),
          fetchedAt,
          ...(remoteAddress ? { remoteAddress } : {}),
          ...(truncated ? { truncated } : {}),
          ...(contentType ? { contentType } : {}),
        });
      };

      const handler: CaptureHandler = {
        [kCapture]: (head, socket) => {
          requestHead = Buffer.from(`${head}\r\n`, 'latin1');
          remoteAddress = socket.remoteAddress;
        },
        onConnect(abort) {
          abortFn = abort as (err: Error) => void;
        },
        onHeaders(statusCode, rawHeaders, resume, statusText) {
          status = statusCode;
          resumeFn = resume;
          let head = `HTTP/1.1 ${statusCode} ${statusText ?? ''}\r\n`;
          for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
            const name = rawHeaders[i]!.toString('latin1');
            const value = rawHeaders[i + 1]!.toString('latin1');
            const lower = name.toLowerCase();
            if (lower === 'content-length') contentLength = Number(value);
            if (lower === 'content-type') contentType = value;
            // Chunked framing is removed by undici; say so instead of claiming chunked bytes.
            head += lower === 'transfer-encoding' ? `X-Lifeboat-Orig-Transfer-Encoding: ${value}\r\n` : `${name}: ${value}\r\n`;
          }
          responseHead = Buffer.from(`${head}\r\n`, 'latin1');
          blockHash.update(responseHead);
          return true;
        },
        onData(chunk) {
          if (settled) return false;
          let data = chunk;
          if (received + data.length > opts.maxBodyBytes) {
            data = data.subarray(0, opts.maxBodyBytes - received);
            truncated = 'length';
          }
          received += data.length;
          payloadHash.update(data);
          blockHash.update(data);
          let ok = true;
          if (spool) ok = spool.stream.write(data);
          else {
            memory.push(Buffer.from(data));
            if (hold(data.length)) {
              const path = join(opts.spoolDir, `body-${process.pid}-${threadId}-${++spoolCounter}.tmp`);
              spool = { path, stream: createWriteStream(path) };
              spool.stream.on('error', (err) => {
                abortFn?.(err);
                fail(new LifeboatError(`spooling ${req.url} to ${path} failed: ${err.message}`, { code: 'E_SPOOL', policy: 'stop', cause: err }));
              });
              ok = spool.stream.write(Buffer.concat(memory));
              memory.length = 0;
              release();
            }
          }
          if (truncated) {
            // Keep what we have; the WARC record says WARC-Truncated: length.
            void finish().catch(fail);
            abortFn?.(new LifeboatError('body limit reached', { code: 'E_BODY_LIMIT', policy: 'give-up' }));
            return false;
          }
          const capWaitMs = opts.bandwidthCap?.take(data.length) ?? 0;
          if (capWaitMs > 0) {
            // Over the bandwidth cap: pause until it has caught up (and the spool has drained).
            let waits = !ok && spool ? 2 : 1;
            const go = () => --waits === 0 && resumeFn?.();
            setTimeout(go, capWaitMs);
            if (!ok && spool) spool.stream.once('drain', go);
            return false;
          }
          if (!ok && spool) spool.stream.once('drain', () => resumeFn?.());
          return ok;
        },
        onComplete() {
          if (contentLength !== undefined && received < contentLength && !truncated) {
            fail(new RetryableFetchError(`${req.url}: body ended after ${received} of ${contentLength} bytes`, { code: 'E_SHORT_BODY' }));
            return;
          }
          void finish().catch(fail);
        },
        onError(err) {
          if (settled) return;
          const code = (err as { code?: string }).code ?? 'E_FETCH';
          if (code === 'UND_ERR_HEADERS_OVERFLOW') {
            // Headers beyond the cap will not shrink on a retry.
            fail(new LifeboatError(`${req.url}: response headers larger than the 256 KiB limit`, { code, policy: 'give-up', cause: err }));
            return;
          }
          fail(err instanceof LifeboatError ? err : new RetryableFetchError(`${req.url}: ${err.message}`, { code, cause: err }));
        },
      };

      try {
        this.#agent.dispatch(
          { origin: url.origin, path: `${url.pathname}${url.search}`, method: 'GET', headers, headersTimeout: opts.headersTimeoutMs, bodyTimeout: opts.idleTimeoutMs },
          handler,
        );
      } catch (err) {
        fail(err as Error);
      }
    });
  }
}

/** Deletes a spooled body once its records are written. */
export async function releaseBody(body: BodySource): Promise<void> {
  if (body.kind === 'file') await unlink(body.path).catch(() => undefined);
}
