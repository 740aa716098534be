import { describe, expect, it } from 'vitest';
import { STEP_FLOOR, judgeLatest, maxStepOf, nearLiveEdge, recheckDelayMs, type LatestState } from '../config/live-edge.js';

/** Issue 21 §1: the pure live-edge rules `crawl --follow` and the tracker's `follow:` share. */

function run(answers: number[], maxStep?: number): { kinds: string[]; state: LatestState } {
  let state: LatestState = { highest: 0, steps: [] };
  const kinds: string[] = [];
  for (const a of answers) {
    const r = judgeLatest(state, a, { maxStep });
    state = r.state;
    kinds.push(`${r.verdict.kind}:${state.highest}`);
  }
  return { kinds, state };
}

describe('judgeLatest', () => {
  it('accepts the first answer and growth within the trend', () => {
    expect(run([100, 150, 150, 220]).kinds).toEqual(['first:100', 'grew:150', 'unchanged:150', 'grew:220']);
  });

  it('holds a glitched 10^15 and drops it when the next poll does not confirm it', () => {
    const { kinds, state } = run([100, 150, 1e15, 170]);
    expect(kinds).toEqual(['first:100', 'grew:150', 'held:150', 'dropped:170']);
    expect(state.held).toBeUndefined();
  });

  it('seeds a jump once a later poll confirms it, and keeps growing from there', () => {
    expect(run([100, 5000, 5010, 5020]).kinds).toEqual(['first:100', 'held:100', 'confirmed:5010', 'grew:5020']);
  });

  it('a confirming answer far above the held one is held again (a glitch that stays growing is not accepted in one step)', () => {
    const { kinds, state } = run([100, 5000, 1e15]);
    expect(kinds).toEqual(['first:100', 'held:100', 'confirmed:5000']);
    expect(state.held).toBe(1e15);
  });

  it('never goes backwards', () => {
    expect(run([100, 90, 100]).kinds).toEqual(['first:100', 'backwards:100', 'unchanged:100']);
  });

  it('derives max_step from the recent growth per poll, with a floor; a fixed max_step wins', () => {
    expect(maxStepOf({ steps: [] })).toBe(STEP_FLOOR);
    expect(maxStepOf({ steps: [10, 20] })).toBe(STEP_FLOOR);
    expect(maxStepOf({ steps: [500, 300] })).toBe(5000);
    expect(maxStepOf({ steps: [500] }, { maxStep: 7 })).toBe(7);
    // A fast platform: 10 polls of 800 each, then 7000 is within 10x the trend.
    expect(run([1, ...Array.from({ length: 10 }, (_, i) => 1 + 800 * (i + 1)), 8001 + 7000]).kinds.at(-1)).toBe('grew:15001');
    expect(run([100, 110, 120], 5).kinds).toEqual(['first:100', 'held:100', 'confirmed:110']);
  });
});

describe('rechecks near the live edge', () => {
  it('only IDs within the window of the highest are near the edge', () => {
    expect(nearLiveEdge(901, 1000, { window: 100 })).toBe(true);
    expect(nearLiveEdge(900, 1000, { window: 100 })).toBe(false);
    expect(nearLiveEdge(5, 0, { window: 100 })).toBe(false);
  });

  it('spaces the rechecks, doubling, and stops after the attempts', () => {
    const o = { attempts: 3, delayMs: 1000 };
    expect([0, 1, 2, 3].map((a) => recheckDelayMs(a, o))).toEqual([1000, 2000, 4000, undefined]);
  });
});
