import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors as undiciErrors } from 'undici';
import { describe, expect, it } from 'vitest';
import { InputError, RetryableFetchError, ScopeError, StorageError } from '../config/errors.js';
import { backoffMs, hostDownCode, retryAfterOfHead } from '../config/retry.js';
import { TrackerClient } from '../tracker/client/client.js';
import {
  isRetryable,
  isRetryableStatus,
  parseRetryAfter,
  RETRY_AFTER_MAX_MS,
  RETRYABLE_ERROR_CODES,
  RETRYABLE_STATUSES,
  retrying,
  type AttemptOutcome,
} from '../config/retry.js';

const withCode = (code: string): Error => Object.assign(new Error(code), { code });

describe('retry rules as data', () => {
  it('lists the statuses of ARCHITECTURE.md "One ID" and none of the final ones', () => {
    for (const status of [408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524]) expect(isRetryableStatus(status)).toBe(true);
    for (const status of [200, 301, 304, 400, 401, 403, 404, 410, 451, 501]) expect(isRetryableStatus(status)).toBe(false);
    expect(RETRYABLE_STATUSES).toContain(429);
    expect(RETRYABLE_ERROR_CODES).toEqual(expect.arrayContaining(['ECONNRESET', 'UND_ERR_SOCKET', 'E_SHORT_BODY', 'E_TOTAL_TIMEOUT']));
  });
});

describe('isRetryable', () => {
  it('retries transient network and undici errors by code', () => {
    for (const code of RETRYABLE_ERROR_CODES) expect(isRetryable(withCode(code)), code).toBe(true);
    expect(isRetryable(new undiciErrors.SocketError('other side closed'))).toBe(true);
    expect(isRetryable(new undiciErrors.HeadersTimeoutError())).toBe(true);
    expect(isRetryable(new undiciErrors.BodyTimeoutError())).toBe(true);
    expect(isRetryable(new undiciErrors.ConnectTimeoutError())).toBe(true);
  });

  it('does not retry permanent or unknown failures', () => {
    for (const code of ['ENOTFOUND', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UND_ERR_ABORTED', 'UND_ERR_INVALID_ARG']) {
      expect(isRetryable(withCode(code)), code).toBe(false);
    }
    expect(isRetryable(new Error('plain'))).toBe(false);
    expect(isRetryable(undefined)).toBe(false);
    expect(isRetryable('ECONNRESET')).toBe(false);
    expect(isRetryable(null)).toBe(false);
  });

  it('follows the policy of lifeboat errors, whatever their cause', () => {
    expect(isRetryable(new RetryableFetchError('HTTP 503', { code: 'E_HTTP_503' }))).toBe(true);
    expect(isRetryable(new ScopeError('private', { code: 'E_SCOPE_ADDRESS', cause: withCode('ECONNRESET') }))).toBe(false);
    expect(isRetryable(new InputError('bad'))).toBe(false);
    expect(isRetryable(new StorageError('disk full', { cause: withCode('ETIMEDOUT') }))).toBe(false);
  });

  it('looks through cause chains and AggregateErrors', () => {
    expect(isRetryable(new TypeError('fetch failed', { cause: withCode('ECONNRESET') }))).toBe(true);
    expect(isRetryable(new Error('outer', { cause: new Error('mid', { cause: withCode('EPIPE') }) }))).toBe(true);
    expect(isRetryable(new AggregateError([withCode('ENOTFOUND'), withCode('ECONNREFUSED')]))).toBe(true);
    expect(isRetryable(new AggregateError([withCode('ENOTFOUND')]))).toBe(false);
  });

  it('judges HTTP status errors by their status', () => {
    expect(isRetryable(Object.assign(new Error('x'), { statusCode: 502 }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('x'), { status: 404 }))).toBe(false);
  });

  it('survives a cause cycle', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(isRetryable(a)).toBe(false);
  });
});

describe('backoffMs', () => {
  it('grows exponentially from baseMs up to maxMs with full jitter', () => {
    const top = () => 0.999999;
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffMs(n, { baseMs: 100, maxMs: 5000, random: top }))).toEqual([
      99, 199, 399, 799, 1599, 3199, 4999,
    ]);
    expect(backoffMs(3, { baseMs: 100, random: () => 0 })).toBe(0);
    expect(backoffMs(3, { baseMs: 100, random: () => 0.5 })).toBe(200);
  });

  it('defaults to 1 s base and 60 s cap, and stays in range for any attempt', () => {
    expect(backoffMs(1, { random: () => 0.5 })).toBe(500);
    for (const attempt of [0, -3, 1.7, 40, 1e6, Number.MAX_SAFE_INTEGER]) {
      const ms = backoffMs(attempt);
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThan(60_000);
      expect(Number.isInteger(ms)).toBe(true);
    }
    expect(backoffMs(0, { random: () => 0.999 })).toBe(999); // attempt < 1 counts as 1
  });

});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2024, 0, 1, 0, 0, 0);

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('86400', now)).toBe(RETRY_AFTER_MAX_MS);
    expect(parseRetryAfter('9'.repeat(400), now)).toBe(RETRY_AFTER_MAX_MS);
  });

  it('reads the three HTTP-date forms as GMT', () => {
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:01:30 GMT', now)).toBe(90_000);
    expect(parseRetryAfter('Monday, 01-Jan-24 00:01:30 GMT', now)).toBe(90_000);
    expect(parseRetryAfter('Mon Jan  1 00:01:30 2024', now)).toBe(90_000);
    expect(parseRetryAfter('Mon, 01 Jan 2024 05:00:00 GMT', now)).toBe(RETRY_AFTER_MAX_MS);
  });

  it('gives 0 for a date in the past', () => {
    expect(parseRetryAfter('Sun, 31 Dec 2023 23:00:00 GMT', now)).toBe(0);
  });

  it('gives undefined for garbage', () => {
    for (const value of [undefined, '', '  ', '-5', '1.5', '1e3', '0x10', 'soon', '2024-01-01T00:01:30Z', 'Mon, 01 Jan 2024', 'Mon, 41 Foo 2024 00:00:00 GMT']) {
      expect(parseRetryAfter(value, now), String(value)).toBeUndefined();
    }
  });
});

describe('retrying (the one loop of the HTTP and browser fetchers)', () => {
  const giveUp = (last: Error, attempts: number): Error => Object.assign(new Error(`gave up after ${attempts}: ${last.message}`), { last });
  const base = { maxAttempts: 3, backoffBaseMs: 0, giveUp };

  it('tries again until an attempt gives a result, and says which attempt it was', async () => {
    const seen: string[] = [];
    const out = await retrying({ ...base, onRetry: (r) => seen.push(r) }, async (n): Promise<AttemptOutcome<string>> => (n < 3 ? { retry: new Error(`HTTP 503 #${n}`) } : { ok: 'body' }));
    expect(out).toEqual({ value: 'body', attempts: 3 });
    expect(seen).toEqual(['HTTP 503 #1', 'HTTP 503 #2']);
  });

  it('gives up after maxAttempts with the last failure, and passes a thrown error through at once', async () => {
    let calls = 0;
    await expect(retrying(base, async (n) => ((calls = n), { retry: new Error(`reset #${n}`) }))).rejects.toThrow('gave up after 3: reset #3');
    expect(calls).toBe(3);
    calls = 0;
    await expect(retrying(base, async () => { calls++; throw new ScopeError('out of scope', { code: 'E_SCOPE' }); })).rejects.toThrow('out of scope');
    expect(calls).toBe(1);
  });

  it('while the host is down, attempts do not count (within maxOutageMs); without it they do', async () => {
    let calls = 0;
    const down = async (): Promise<AttemptOutcome<never>> => ((calls++), { retry: new Error('ECONNREFUSED'), hostDown: true });
    await expect(retrying({ ...base, maxOutageMs: 0 }, down)).rejects.toThrow('gave up after 3');
    expect(calls).toBe(3);
    calls = 0;
    const out = await retrying({ ...base, maxOutageMs: 60_000 }, async (n) => (++calls < 6 ? { retry: new Error('ECONNREFUSED'), hostDown: true } : { ok: n }));
    expect(out.value, 'the sixth call is still attempt 1').toBe(1);
    expect(calls).toBe(6);
  });

  it('stops when its signal is aborted', async () => {
    const stop = new AbortController();
    await expect(retrying({ ...base, signal: stop.signal }, async () => (stop.abort(new Error('stopped')), { retry: new Error('503') }))).rejects.toThrow(/aborted|stopped/);
  });
});

describe('the one backoff', () => {
  it('draws full, equal or no jitter below the same ceiling', () => {
    const top = () => 0.999999;
    const bottom = () => 0;
    expect(backoffMs(3, { baseMs: 100, random: bottom })).toBe(0);
    expect(backoffMs(3, { baseMs: 100, random: top })).toBe(399);
    expect(backoffMs(3, { baseMs: 100, random: bottom, jitter: 'equal' })).toBe(200);
    expect(backoffMs(3, { baseMs: 100, random: top, jitter: 'equal' })).toBe(399);
    expect(backoffMs(3, { baseMs: 100, random: top, jitter: 'none' })).toBe(400);
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffMs(n, { baseMs: 15_000, maxMs: 600_000, jitter: 'none' }))).toEqual([15_000, 30_000, 60_000, 120_000, 240_000, 480_000]);
    expect(backoffMs(7, { baseMs: 15_000, maxMs: 600_000, jitter: 'none' })).toBe(600_000);
  });
});

describe('the shared helpers of every retry loop', () => {
  it('knows a down host by code, through causes, and by Chromium net error names', () => {
    expect(hostDownCode(withCode('ECONNREFUSED'))).toBe('ECONNREFUSED');
    expect(hostDownCode(new Error('fetch failed', { cause: withCode('EHOSTUNREACH') }))).toBe('EHOSTUNREACH');
    expect(hostDownCode(new Error('page.goto: net::ERR_CONNECTION_REFUSED at http://127.0.0.1:9/'))).toBe('net::ERR_CONNECTION_REFUSED');
    expect(hostDownCode(withCode('ECONNRESET'))).toBeUndefined();
    expect(hostDownCode(new Error('net::ERR_ABORTED'))).toBeUndefined();
  });

  it('reads Retry-After from a raw response head, any case', () => {
    expect(retryAfterOfHead(Buffer.from('HTTP/1.1 429 Too Many\r\nRETRY-after:  7 \r\n\r\n', 'latin1'))).toBe('7');
    expect(retryAfterOfHead('HTTP/1.1 503 x\r\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n')).toBe('Sun, 06 Nov 1994 08:49:37 GMT');
    expect(retryAfterOfHead('HTTP/1.1 200 OK\r\n\r\n')).toBeUndefined();
  });

  it('tells each failed attempt with the wait before the next, and the last with none', async () => {
    const seen: { attempt: number; waitMs: number }[] = [];
    await expect(
      retrying(
        { maxAttempts: 3, backoffBaseMs: 100, jitter: 'none', sleep: async () => undefined, onRetry: (_r, i) => seen.push({ attempt: i.attempt, waitMs: i.waitMs }), giveUp: (last) => last },
        async (n) => ({ retry: new Error(`no ${n}`), ...(n === 2 ? { waitMs: 5_000 } : {}) }),
      ),
    ).rejects.toThrow('no 3');
    expect(seen).toEqual([
      { attempt: 1, waitMs: 100 },
      { attempt: 2, waitMs: 5_000 },
      { attempt: 3, waitMs: 0 },
    ]);
  });
});

describe('the tracker client uses the one retry module', () => {
  it('waits for a Retry-After given as an HTTP date (Number() read it as NaN before)', async () => {
    let calls = 0;
    const server = http.createServer((_req, res) => {
      calls++;
      if (calls === 1) {
        res.writeHead(503, { 'retry-after': new Date(Date.now() + 120_000).toUTCString(), 'content-type': 'application/json' });
        res.end('{"message":"busy"}');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ node_id: 1, nick: "n", token: "t" }));
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const waits: number[] = [];
      const client = new TrackerClient({
        baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        clientVersion: '0.1.0',
        retry: { maxAttempts: 3, baseDelayMs: 10 },
        sleep: async (ms) => {
          waits.push(ms);
        },
      });
      await client.register("n");
      expect(calls).toBe(2);
      expect(waits).toHaveLength(1);
      expect(waits[0]).toBeGreaterThan(100_000);
      expect(waits[0]).toBeLessThanOrEqual(120_000);
    } finally {
      server.close();
    }
  });
});
