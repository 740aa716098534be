import { describe, expect, it } from 'vitest';
import { createCodec } from '../config/id-codec.js';
import { parseRanges, RangeSet } from '../config/id-ranges.js';

describe('ID codecs', () => {
  it('round-trips integer, base36, hex and padded IDs', () => {
    const cases: [Parameters<typeof createCodec>[0], number, string][] = [
      ['integer', 12345, '12345'],
      ['base36', 3000, '2bc'],
      ['hex', 511, '1ff'],
      [{ padded: 8 }, 42, '00000042'],
    ];
    for (const [spec, id, text] of cases) {
      const c = createCodec(spec);
      expect(c.encode(id)).toBe(text);
      expect(c.decode(text)).toBe(id);
    }
    expect(createCodec('base36').decode('2BC')).toBe(3000);
  });

  it('rejects IDs that are not in the codec', () => {
    expect(() => createCodec('integer').decode('12a')).toThrow(/not a valid integer ID/);
    expect(() => createCodec('hex').decode('xyz')).toThrow(/not a valid hex ID/);
    expect(() => createCodec('integer').decode('99999999999999999')).toThrow();
    expect(() => createCodec('base36').decode('-1')).toThrow();
  });
});

describe('range lists', () => {
  const int = createCodec('integer');
  it('parses, sorts and merges', () => {
    const r = parseRanges('5000-6000,1-1000,900-1200,7', int);
    expect(r.toJSON()).toEqual([[1, 1200], [5000, 6000]]);
    expect(r.size).toBe(1200 + 1001);
    expect(r.format()).toBe('1-1200,5000-6000');
    expect(parseRanges('1-2\n4\n# comment\n6-7', int).toJSON()).toEqual([[1, 2], [4, 4], [6, 7]]);
  });

  it('uses the codec notation', () => {
    expect(parseRanges('1-2bi', createCodec('base36')).toJSON()).toEqual([[1, 3006]]);
    expect(parseRanges('1-1ff', createCodec('hex')).toJSON()).toEqual([[1, 511]]);
  });

  it('names the bad part', () => {
    expect(() => parseRanges('1-10,20-x', int)).toThrow(/bad ID range "20-x"/);
    expect(() => parseRanges('10-1', int)).toThrow(/"10-1": the end comes before the start/);
    expect(() => parseRanges('1--5', int)).toThrow(/bad ID range "1--5"/);
    expect(() => parseRanges('', int)).toThrow(/no ID ranges/);
  });

  it('subtracts, intersects and chunks', () => {
    const a = new RangeSet([{ start: 1, end: 100 }]);
    const b = new RangeSet([{ start: 10, end: 20 }, { start: 50, end: 60 }, { start: 95, end: 200 }]);
    expect(a.subtract(b).toJSON()).toEqual([[1, 9], [21, 49], [61, 94]]);
    expect(a.intersect(b).toJSON()).toEqual([[10, 20], [50, 60], [95, 100]]);
    expect([...new RangeSet([{ start: 1, end: 25 }]).chunks(10)]).toEqual([{ start: 1, end: 10 }, { start: 11, end: 20 }, { start: 21, end: 25 }]);
    expect(b.has(55)).toBe(true);
    expect(b.has(30)).toBe(false);
  });

  it('walks a 100-million-ID range lazily', () => {
    const r = parseRanges('1-100000000', int);
    const it = r.ids();
    expect(it.next().value).toBe(1);
    expect(it.next().value).toBe(2);
    expect(r.size).toBe(100_000_000);
    expect(r.ranges.length).toBe(1);
  });

  it('rejects malformed JSON range lists', () => {
    expect(() => RangeSet.fromJSON([[5, 1]])).toThrow(/end is before start/);
    expect(() => RangeSet.fromJSON('nope')).toThrow(/must be an array/);
  });
});
