import { describe, expect, it } from 'vitest';
import { RangeSet } from '../config/id-ranges.js';
import { STEP_FLOOR, defaultConfirmMs, judgeLatest, keepYoung, maxStepOf, recheckDelayMs, recheckable, type AcceptedRange, type LatestState } from '../config/live-edge.js';

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

  it('confirms a held jump only once it was seen for confirmMs, every poll in between answering at least as high', () => {
    const judge = (state: LatestState, answered: number, now: number) => judgeLatest(state, answered, { confirmMs: 60_000, now });
    let state: LatestState = judge({ highest: 0, steps: [] }, 100, 0).state;
    const seen: string[] = [];
    for (const [answered, at] of [[1e15, 1000], [1e15, 2000], [1e15, 30_000], [1e15, 60_999], [1e15, 61_000]] as const) {
      const r = judge(state, answered, at);
      state = r.state;
      seen.push(`${r.verdict.kind}:${state.highest}`);
    }
    expect(seen).toEqual(['held:100', 'holding:100', 'holding:100', 'holding:100', 'confirmed:1000000000000000']);
    // A glitch seen by several polls within confirmMs, then a normal answer: dropped, never accepted.
    let glitch: LatestState = judge({ highest: 0, steps: [] }, 100, 0).state;
    const kinds = [[1e15, 1000], [1e15, 2000], [1e15, 3000], [110, 4000]].map(([a, at]) => {
      const r = judge(glitch, a!, at!);
      glitch = r.state;
      return `${r.verdict.kind}:${glitch.highest}`;
    });
    expect(kinds).toEqual(['held:100', 'holding:100', 'holding:100', 'dropped:110']);
    expect(glitch.held).toBeUndefined();
    // A held jump kept from before heldAt existed counts from its next sighting.
    expect(judge({ highest: 100, steps: [], held: 1e15 }, 1e15, 5000)).toMatchObject({ verdict: { kind: 'holding', waitMs: 60_000 }, state: { heldAt: 5000 } });
  });

  it('the default confirmation time is three polls, at least a minute', () => {
    expect(defaultConfirmMs(1000)).toBe(60_000);
    expect(defaultConfirmMs(60_000)).toBe(180_000);
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
  const set = (text: string) => new RangeSet(text.split(',').map((r) => r.split('-').map(Number)).map(([a, b]) => ({ start: a!, end: b ?? a! })));
  const noAge = { window: 100, ageMs: 0 };

  it('only IDs within the window of the highest are near the edge', () => {
    expect(recheckable(set('899-1000'), { highest: 1000, accepted: [] }, 0, noAge).format()).toBe('901-1000');
    expect(recheckable(set('5'), { highest: 0, accepted: [] }, 0, noAge).isEmpty).toBe(true);
    expect(recheckable(set('999'), { highest: 1000, accepted: [] }, 0, { window: 0, ageMs: 0 }).isEmpty).toBe(true);
  });

  it('an ID younger than the age is asked again wherever it lies; one exactly that old, or of the first answer (no accepted range), is not', () => {
    const T = 1_700_000_000_000;
    // Polls accepted 101-200 at T, 201-5000 at T + 50 s; the follow started from 1-100 (no age).
    const accepted: AcceptedRange[] = [
      { start: 101, end: 200, at: T },
      { start: 201, end: 5000, at: T + 50_000 },
    ];
    const o = { window: 100, ageMs: 60_000 };
    const edge = { highest: 5000, accepted };
    const missing = set('50,150,3000,4950');
    // At T + 59.999 s both polls are younger than a minute: everything but the first answer's 50.
    expect(recheckable(missing, edge, T + 59_999, o).format()).toBe('150,3000,4950');
    // At T + 60 s the first poll is a minute old: 150 is no longer young; 3000 still is; 4950 is in the window.
    expect(recheckable(missing, edge, T + 60_000, o).format()).toBe('3000,4950');
    // Long after: the window alone.
    expect(recheckable(missing, edge, T + 3_600_000, o).format()).toBe('4950');
    // Age 0: off.
    expect(recheckable(missing, edge, T, { window: 100, ageMs: 0 }).format()).toBe('4950');
    // What is kept: only ranges that can still make an ID young.
    expect(keepYoung(accepted, T + 60_000, o)).toEqual([accepted[1]]);
    expect(keepYoung(accepted, T, { ageMs: 0 })).toEqual([]);
  });

  it('spaces the rechecks, doubling, and stops after the attempts', () => {
    const o = { attempts: 3, delayMs: 1000 };
    expect([0, 1, 2, 3].map((a) => recheckDelayMs(a, o))).toEqual([1000, 2000, 4000, undefined]);
  });
});
