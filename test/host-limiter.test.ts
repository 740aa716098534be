import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InputError } from '../config/errors.js';
import { HostLimiter } from '../crawler/fetch/host-limiter.js';

// Fake timers drive both the limiter's clock (Date.now) and its sleeps (setTimeout): no real waits.
beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Starts `count` instant tasks on `host` and records when each started. */
function startMany(limiter: HostLimiter, host: string, count: number): { starts: number[]; done: Promise<unknown> } {
  const starts: number[] = [];
  const done = Promise.all(Array.from({ length: count }, () => limiter.run(host, async () => void starts.push(Date.now()))));
  return { starts, done };
}

describe('HostLimiter rate', () => {
  it('spaces requests at the configured rate', async () => {
    const limiter = new HostLimiter({ ratePerSec: 10, perHostConcurrency: 100, burst: 1 });
    const { starts, done } = startMany(limiter, 'example.org', 21);
    await vi.advanceTimersByTimeAsync(999);
    expect(starts).toHaveLength(10);
    await vi.advanceTimersByTimeAsync(1001);
    await done;
    expect(starts).toEqual(Array.from({ length: 21 }, (_, i) => i * 100));
  });

  it('lets a burst go at once, then the rate', async () => {
    const limiter = new HostLimiter({ ratePerSec: 10, perHostConcurrency: 100, burst: 5 });
    const { starts, done } = startMany(limiter, 'example.org', 8);
    await vi.advanceTimersByTimeAsync(300);
    await done;
    expect(starts).toEqual([0, 0, 0, 0, 0, 100, 200, 300]);
  });

  it('keeps hosts apart and matches host names case-insensitively', async () => {
    const limiter = new HostLimiter({ ratePerSec: 1, perHostConcurrency: 10, burst: 1 });
    const a = startMany(limiter, 'a.example', 2);
    const b = startMany(limiter, 'B.example.', 1);
    const b2 = startMany(limiter, 'b.example', 1);
    await vi.advanceTimersByTimeAsync(0);
    expect([a.starts, b.starts, b2.starts]).toEqual([[0], [0], []]);
    await vi.advanceTimersByTimeAsync(1000);
    await Promise.all([a.done, b.done, b2.done]);
    expect(b2.starts).toEqual([1000]);
  });

  it('honours a lower per-host ceiling (Crawl-delay)', async () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 10, burst: 1 });
    limiter.setHostRate('slow.example', 2);
    const { starts, done } = startMany(limiter, 'slow.example', 3);
    await vi.advanceTimersByTimeAsync(1000);
    await done;
    expect(starts).toEqual([0, 500, 1000]);
    expect(limiter.stats('slow.example').rate).toBe(2);
  });
});

describe('HostLimiter concurrency', () => {
  it('caps requests in flight per host and reports queued ones', async () => {
    const limiter = new HostLimiter({ ratePerSec: 1000, perHostConcurrency: 2, burst: 100 });
    const gates = Array.from({ length: 5 }, deferred);
    let running = 0;
    let maxRunning = 0;
    const all = Promise.all(
      gates.map((gate) =>
        limiter.run('example.org', async () => {
          running += 1;
          maxRunning = Math.max(maxRunning, running);
          await gate.promise;
          running -= 1;
        }),
      ),
    );
    const other = limiter.run('other.example', async () => 'other');
    await vi.advanceTimersByTimeAsync(0);
    expect(limiter.stats('example.org')).toMatchObject({ inFlight: 2, queued: 3 });
    expect(await other).toBe('other'); // another host is not held up
    for (const gate of gates) {
      gate.resolve();
      await vi.advanceTimersByTimeAsync(0);
    }
    await all;
    expect(maxRunning).toBe(2);
    expect(limiter.stats('example.org')).toMatchObject({ inFlight: 0, queued: 0 });
    expect(limiter.stats()).toMatchObject({ rate: 2000, inFlight: 0 });
  });

  it('passes results and errors through and frees the slot on error', async () => {
    const limiter = new HostLimiter({ ratePerSec: 1000, perHostConcurrency: 1, burst: 10 });
    const failing = limiter.run('example.org', async () => {
      throw new Error('boom');
    });
    await expect(failing).rejects.toThrow('boom');
    await expect(limiter.run('example.org', async () => 42)).resolves.toBe(42);
  });

  it('rejects bad options', () => {
    expect(() => new HostLimiter({ ratePerSec: 0, perHostConcurrency: 1 })).toThrow(InputError);
    expect(() => new HostLimiter({ ratePerSec: 1, perHostConcurrency: 0 })).toThrow(InputError);
    expect(() => new HostLimiter({ ratePerSec: 1, perHostConcurrency: 1.5 })).toThrow(InputError);
  });
});

describe('HostLimiter throttling', () => {
  it('pauses a host until Retry-After after a 429', async () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 10, burst: 1 });
    await limiter.run('example.org', async () => undefined);
    limiter.throttled('example.org', 5000);
    expect(limiter.stats('example.org')).toMatchObject({ rate: 50, throttles: 1, pausedForMs: 5000 });
    const { starts, done } = startMany(limiter, 'example.org', 3);
    await vi.advanceTimersByTimeAsync(4999);
    expect(starts).toEqual([]);
    expect(limiter.stats('example.org').queued).toBe(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(starts).toEqual([5000]);
    // After the pause: no burst, the halved rate (50/s → 20 ms apart).
    await vi.advanceTimersByTimeAsync(40);
    await done;
    expect(starts).toEqual([5000, 5020, 5040]);
  });

  it('pauses with a doubling backoff when there is no Retry-After', async () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 10, burst: 1, basePauseMs: 1000 });
    limiter.throttled('example.org', undefined);
    expect(limiter.stats('example.org').pausedForMs).toBe(1000);
    await vi.advanceTimersByTimeAsync(1000);
    limiter.throttled('example.org', undefined);
    expect(limiter.stats('example.org').pausedForMs).toBe(2000);
    await vi.advanceTimersByTimeAsync(2000);
    limiter.succeeded('example.org');
    limiter.throttled('example.org', undefined);
    expect(limiter.stats('example.org').pausedForMs).toBe(1000); // a success resets the backoff
  });

  it('halves the rate once per pause, not once per in-flight 429', async () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 16 });
    for (let i = 0; i < 16; i++) limiter.throttled('example.org', 1000);
    expect(limiter.stats('example.org')).toMatchObject({ rate: 50, throttles: 16, pausedForMs: 1000 });
    // A longer Retry-After seen during the pause extends it.
    limiter.throttled('example.org', 3000);
    expect(limiter.stats('example.org')).toMatchObject({ rate: 50, pausedForMs: 3000 });
  });

  it('halves down to 0.5 req/s and recovers additively to the configured rate', async () => {
    const limiter = new HostLimiter({ ratePerSec: 8, perHostConcurrency: 4 });
    const rates: number[] = [];
    for (let i = 0; i < 6; i++) {
      limiter.throttled('example.org', 10);
      rates.push(limiter.stats('example.org').rate);
      await vi.advanceTimersByTimeAsync(10);
    }
    expect(rates).toEqual([4, 2, 1, 0.5, 0.5, 0.5]);
    // Default step: max(1, 10% of the rate) req/s per second of successes; at 0.5 req/s one success is 2 s.
    limiter.succeeded('example.org');
    expect(limiter.stats('example.org').rate).toBeCloseTo(2.5, 6);
    limiter.succeeded('example.org');
    expect(limiter.stats('example.org').rate).toBeCloseTo(2.9, 6);
    for (let i = 0; i < 100; i++) limiter.succeeded('example.org');
    expect(limiter.stats('example.org').rate).toBe(8);
  });

  it('halves the rate the host really got, not a configured rate it never reached', async () => {
    const limiter = new HostLimiter({ ratePerSec: 1000, perHostConcurrency: 100 });
    const { done } = startMany(limiter, 'example.org', 40);
    await vi.advanceTimersByTimeAsync(1100);
    await done;
    limiter.throttled('example.org', 0);
    expect(limiter.stats('example.org').rate).toBe(20);
  });

  it('actually runs slower after throttles and faster after recovery', async () => {
    const limiter = new HostLimiter({ ratePerSec: 10, perHostConcurrency: 10, burst: 1, recoveryPerSuccessPerSec: 10 });
    limiter.throttled('example.org', 0);
    expect(limiter.stats('example.org').rate).toBe(5);
    const slow = startMany(limiter, 'example.org', 3);
    await vi.advanceTimersByTimeAsync(600);
    await slow.done;
    expect(slow.starts).toEqual([200, 400, 600]); // Retry-After: 0 still costs the bucket its token
    limiter.succeeded('example.org');
    const fast = startMany(limiter, 'example.org', 3);
    await vi.advanceTimersByTimeAsync(300);
    await fast.done;
    expect(fast.starts).toEqual([700, 800, 900]);
  });
});
