import { describe, expect, it } from 'vitest';
import { jsonNesting, ValueBounder } from '../crawler/extract/extract-bounds.js';

const limits = { maxFieldDepth: 4, maxFieldChars: 10, maxFieldValues: 20 };

describe('ValueBounder (issue 11 §1)', () => {
  it('keeps small values as they are, with no note', () => {
    const b = new ValueBounder(limits);
    expect(b.bound('a', { x: [1, 'two', null, true] })).toEqual({ x: [1, 'two', null, true] });
    expect([...b.notes]).toEqual([]);
  });

  it('cuts depth, string length and the number of values, saying so', () => {
    const b = new ValueBounder(limits);
    expect(b.bound('deep', [[[['x']]]])).toEqual([[[null]]]);
    expect(b.bound('long', 'abcdefghijklmnop')).toBe('abcdefghij');
    const many = b.bound('many', Array.from({ length: 50 }, (_, i) => i)) as number[];
    expect(many.length).toBeLessThan(20);
    expect([...b.notes]).toEqual([
      'field deep: nested deeper than 4 levels, cut there',
      'field long: a string of 16 characters cut to 10',
      'field many: more than 20 values, cut',
    ]);
    expect(b.bound('late', 'x')).toBeUndefined();
  });

  it('a value 100,000 levels deep becomes one that JSON.stringify takes', () => {
    let v: unknown = 'x';
    for (let i = 0; i < 100_000; i++) v = [v];
    expect(() => JSON.stringify(v)).toThrow(RangeError);
    const kept = new ValueBounder({ maxFieldDepth: 32, maxFieldChars: 100, maxFieldValues: 1000 }).bound('handle', v);
    expect(JSON.stringify(kept).length).toBe(31 * 2 + 4);
  });

  it('a "__proto__" key stays a key', () => {
    const kept = new ValueBounder(limits).bound('o', JSON.parse('{"__proto__": {"polluted": 1}}')) as Record<string, unknown>;
    expect(JSON.stringify(kept)).toBe('{"__proto__":{"polluted":1}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('jsonNesting', () => {
  it('counts brackets outside strings and stops past the limit', () => {
    expect(jsonNesting('{"a":[1,{"b":"[[[{"}]}', 100)).toBe(3);
    expect(jsonNesting('"\\"[["', 100)).toBe(0);
    expect(jsonNesting('['.repeat(1000), 10)).toBe(11);
  });
});
