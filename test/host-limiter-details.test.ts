import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HostLimiter } from '../crawler/fetch/host-limiter.js';

// The host limiter's finer promises, each found unguarded by the mutation run (TESTING.md):
// the default burst, option messages, what "the rate the host really got" means over time,
// which Retry-After values count, and the bucket after a pause. Fake timers drive the clock.

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

function startMany(limiter: HostLimiter, host: string, count: number): { starts: number[]; done: Promise<unknown> } {
  const starts: number[] = [];
  const done = Promise.all(Array.from({ length: count }, () => limiter.run(host, async () => void starts.push(Date.now()))));
  return { starts, done };
}

/** Runs `count` instant requests now and waits for them. */
async function burstOf(limiter: HostLimiter, count: number): Promise<void> {
  const { done } = startMany(limiter, 'example.org', count);
  await vi.advanceTimersByTimeAsync(0);
  await done;
}

describe('HostLimiter details', () => {
  it('bursts a tenth of the rate by default (at least 1), then keeps the rate', async () => {
    const limiter = new HostLimiter({ ratePerSec: 50, perHostConcurrency: 100 });
    const { starts, done } = startMany(limiter, 'example.org', 8);
    await vi.advanceTimersByTimeAsync(100);
    await done;
    expect(starts).toEqual([0, 0, 0, 0, 0, 20, 40, 60]);
  });

  it('names the bad option and its value', () => {
    expect(() => new HostLimiter({ ratePerSec: Infinity, perHostConcurrency: 1 })).toThrow('ratePerSec must be a positive number, got Infinity');
    expect(() => new HostLimiter({ ratePerSec: 1, perHostConcurrency: 1.5 })).toThrow('perHostConcurrency must be a positive integer, got 1.5');
    expect(() => new HostLimiter({ ratePerSec: 1, perHostConcurrency: 1, burst: 0.5 })).toThrow('burst must be at least 1, got 0.5');
    expect(() => new HostLimiter({ ratePerSec: 1, perHostConcurrency: 1, burst: 1 })).not.toThrow();
    const limiter = new HostLimiter({ ratePerSec: 10, perHostConcurrency: 1 });
    expect(() => limiter.setHostRate('example.org', 0)).toThrow('ratePerSec must be a positive number, got 0');
    expect(() => limiter.setHostRate('example.org', 0.1)).not.toThrow();
  });

  it('halves the last full second the host really got, even just after a new second began', async () => {
    const limiter = new HostLimiter({ ratePerSec: 1000, perHostConcurrency: 100, burst: 100 });
    for (let s = 0; s < 3; s++) {
      await burstOf(limiter, 12);
      await vi.advanceTimersByTimeAsync(1000);
    }
    await burstOf(limiter, 1); // t = 3000: a new window with one request; the last one had 12
    limiter.throttled('example.org', 0);
    expect(limiter.stats('example.org').rate).toBe(6);
  });

  it('does not take an old second (before a long idle spell) for the rate the host got', async () => {
    const limiter = new HostLimiter({ ratePerSec: 1000, perHostConcurrency: 100, burst: 100 });
    await burstOf(limiter, 12);
    await vi.advanceTimersByTimeAsync(5000);
    await burstOf(limiter, 1);
    limiter.throttled('example.org', 0);
    expect(limiter.stats('example.org').rate).toBe(500); // too few requests seen: halve the configured rate
  });

  it('takes exactly 10 requests in a second as an observed rate', async () => {
    const limiter = new HostLimiter({ ratePerSec: 1000, perHostConcurrency: 100, burst: 100 });
    await burstOf(limiter, 10);
    limiter.throttled('example.org', 0);
    expect(limiter.stats('example.org').rate).toBe(5);
  });

  it('ignores a negative Retry-After (exponential pause instead) and never shortens a pause', () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 1, basePauseMs: 1000 });
    limiter.throttled('example.org', -5);
    expect(limiter.stats('example.org').pausedForMs).toBe(1000);
    limiter.throttled('example.org', 3000);
    limiter.throttled('example.org', 500);
    expect(limiter.stats('example.org').pausedForMs).toBe(3000);
  });

  it('ends a pause set later in the run at its own time', async () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 10, burst: 1 });
    await vi.advanceTimersByTimeAsync(1000);
    limiter.throttled('example.org', 5000);
    const { starts, done } = startMany(limiter, 'example.org', 1);
    await vi.advanceTimersByTimeAsync(8000);
    await done;
    expect(starts).toEqual([6000]);
  });

  it('after a pause: one token, then the halved rate; later the bucket refills only to the halved burst', async () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 100, burst: 10 });
    limiter.throttled('example.org', 1000); // 50 req/s, burst 5
    const first = startMany(limiter, 'example.org', 3);
    await vi.advanceTimersByTimeAsync(1100);
    await first.done;
    expect(first.starts).toEqual([1000, 1020, 1040]);
    await vi.advanceTimersByTimeAsync(3000 - 1100);
    const second = startMany(limiter, 'example.org', 7);
    await vi.advanceTimersByTimeAsync(100);
    await second.done;
    expect(second.starts).toEqual([3000, 3000, 3000, 3000, 3000, 3020, 3040]);
  });

  it('spaces requests exactly at a rate that does not divide a second', async () => {
    // Burst 2 leaves a fraction of a token after the third start: the fourth waits only for the rest.
    const limiter = new HostLimiter({ ratePerSec: 3, perHostConcurrency: 10, burst: 2 });
    const { starts, done } = startMany(limiter, 'example.org', 4);
    await vi.advanceTimersByTimeAsync(1000);
    await done;
    expect(starts).toEqual([0, 0, 334, 667]);
  });

  it('reports one host, all hosts, and a host never seen', async () => {
    const limiter = new HostLimiter({ ratePerSec: 100, perHostConcurrency: 1 });
    limiter.throttled('a.example', 1000);
    limiter.throttled('b.example', 2000);
    expect(limiter.stats('a.example')).toMatchObject({ rate: 50, throttles: 1, pausedForMs: 1000 });
    expect(limiter.stats()).toMatchObject({ rate: 100, throttles: 2, pausedForMs: 2000 });
    expect(limiter.stats('c.example')).toEqual({ rate: 100, throttles: 0, inFlight: 0, queued: 0, pausedForMs: 0 });
  });
});
