import { describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { Frontier, type FrontierSource } from '../crawler/run/frontier.js';

// The frontier alone, over an in-memory source shaped like the shard's (ShardRecorder.frontierSource).

function source(o: { final?: [number, number][]; related?: number[][]; finalIds?: number[] } = {}): FrontierSource & { asked: number } {
  const batches = [...(o.related ?? [])];
  const finalIds = new Set(o.finalIds ?? []);
  return {
    asked: 0,
    finalRanges: () => (o.final ?? []).map(([start, end]) => ({ start, end })),
    takeRelated(limit: number) {
      this.asked++;
      return (batches.shift() ?? []).slice(0, limit);
    },
    isFinal: (id) => finalIds.has(id),
  };
}

const walk = (f: Frontier): number[] => [...f.ids()];

describe('Frontier', () => {
  it('walks the requested ranges in order, minus what the shard already finished', () => {
    const f = new Frontier(RangeSet.fromJSON([[1, 10], [20, 22]]), source({ final: [[3, 5], [21, 21]] }));
    expect(f.remaining).toBe(9);
    expect(walk(f)).toEqual([1, 2, 6, 7, 8, 9, 10, 20, 22]);
  });

  it('serves related IDs first, once each, only inside the requested ranges, ahead of the cursor and not final', () => {
    // Asked before each ID: first batch before ID 1, second before ID 2, …
    const f = new Frontier(RangeSet.fromJSON([[1, 10]]), source({ related: [[7, 99, 7], [], [1, 8, 9], []], finalIds: [9] }));
    // 7 jumps the queue (99 is outside, the second 7 a duplicate); 1 is behind the cursor, 9 final, 8 ahead.
    expect(walk(f)).toEqual([7, 1, 2, 8, 3, 4, 5, 6, 9, 10]);
  });

  it('inScope answers for the requested ranges, finished or not', () => {
    const f = new Frontier(RangeSet.fromJSON([[5, 6]]), source({ final: [[5, 5]] }));
    expect([4, 5, 6, 7].map((id) => f.inScope(id))).toEqual([false, true, true, false]);
  });
});
