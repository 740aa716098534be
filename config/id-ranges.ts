import { InputError } from './errors.js';
import type { IdCodec } from './id-codec.js';

/** An inclusive range of IDs. */
export interface IdRange {
  start: number;
  end: number;
}

/**
 * A normalised set of ID ranges: sorted, non-overlapping, non-adjacent. Its size grows with
 * the number of ranges, never with the number of IDs, so a 100-million-ID range costs 16 bytes.
 */
export class RangeSet {
  #ranges: IdRange[];

  constructor(ranges: Iterable<IdRange> = []) {
    this.#ranges = RangeSet.#normalise([...ranges]);
  }

  static #normalise(input: IdRange[]): IdRange[] {
    const sorted = input.filter((r) => r.end >= r.start).sort((a, b) => a.start - b.start);
    const out: IdRange[] = [];
    for (const r of sorted) {
      const last = out[out.length - 1];
      if (last && r.start <= last.end + 1) last.end = Math.max(last.end, r.end);
      else out.push({ start: r.start, end: r.end });
    }
    return out;
  }

  get ranges(): readonly IdRange[] {
    return this.#ranges;
  }

  get isEmpty(): boolean {
    return this.#ranges.length === 0;
  }

  /** The number of IDs in the set. */
  get size(): number {
    let n = 0;
    for (const r of this.#ranges) n += r.end - r.start + 1;
    return n;
  }

  get min(): number | undefined {
    return this.#ranges[0]?.start;
  }

  get max(): number | undefined {
    return this.#ranges[this.#ranges.length - 1]?.end;
  }

  has(id: number): boolean {
    let lo = 0;
    let hi = this.#ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.#ranges[mid]!;
      if (id < r.start) hi = mid - 1;
      else if (id > r.end) lo = mid + 1;
      else return true;
    }
    return false;
  }

  union(other: RangeSet | Iterable<IdRange>): RangeSet {
    const more = other instanceof RangeSet ? other.ranges : [...other];
    return new RangeSet([...this.#ranges, ...more]);
  }

  subtract(other: RangeSet | Iterable<IdRange>): RangeSet {
    const cut = other instanceof RangeSet ? other : new RangeSet(other);
    const out: IdRange[] = [];
    let j = 0;
    const cuts = cut.ranges;
    for (const r of this.#ranges) {
      let start = r.start;
      while (j < cuts.length && cuts[j]!.end < start) j++;
      let k = j;
      while (k < cuts.length && cuts[k]!.start <= r.end) {
        const c = cuts[k]!;
        if (c.start > start) out.push({ start, end: c.start - 1 });
        start = Math.max(start, c.end + 1);
        k++;
      }
      if (start <= r.end) out.push({ start, end: r.end });
    }
    return new RangeSet(out);
  }

  intersect(other: RangeSet): RangeSet {
    return this.subtract(this.subtract(other));
  }

  /** Yields every ID in order, lazily. */
  *ids(): Generator<number> {
    for (const r of this.#ranges) for (let id = r.start; id <= r.end; id++) yield id;
  }

  /** Splits the set into chunks of at most `size` IDs each (tracker items). */
  *chunks(size: number): Generator<IdRange> {
    for (const r of this.#ranges) {
      for (let s = r.start; s <= r.end; s += size) yield { start: s, end: Math.min(r.end, s + size - 1) };
    }
  }

  format(codec?: IdCodec): string {
    const enc = codec ? (n: number) => codec.encode(n) : (n: number) => String(n);
    return this.#ranges.map((r) => (r.start === r.end ? enc(r.start) : `${enc(r.start)}-${enc(r.end)}`)).join(',');
  }

  toJSON(): [number, number][] {
    return this.#ranges.map((r) => [r.start, r.end]);
  }

  static fromJSON(value: unknown): RangeSet {
    if (!Array.isArray(value)) throw new InputError('a range list must be an array of [start, end] pairs');
    return new RangeSet(
      value.map((pair) => {
        if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((n) => Number.isSafeInteger(n) && n >= 0)) {
          throw new InputError(`bad range pair ${JSON.stringify(pair)}: expected [start, end] of non-negative integers`);
        }
        const [start, end] = pair as [number, number];
        if (end < start) throw new InputError(`bad range pair ${JSON.stringify(pair)}: end is before start`);
        return { start, end };
      }),
    );
  }
}

/**
 * Parses `1-1000,5000-6000` (or single IDs, or whitespace/newline separated lists, as in a
 * merge's missing-ranges.txt) in the codec's notation. Errors name the offending part.
 */
export function parseRanges(text: string, codec: IdCodec): RangeSet {
  const parts = text.replace(/#[^\n]*/g, ' ').split(/[\s,]+/).filter((p) => p.length > 0);
  if (parts.length === 0) throw new InputError(`no ID ranges in "${text}"`, { code: 'E_RANGE' });
  const ranges: IdRange[] = [];
  for (const part of parts) {
    const m = /^([^-]+)(?:-([^-]+))?$/.exec(part);
    if (!m) throw new InputError(`bad ID range "${part}": expected START-END or a single ID`, { code: 'E_RANGE' });
    let start: number;
    let end: number;
    try {
      start = codec.decode(m[1]!);
      end = m[2] === undefined ? start : codec.decode(m[2]);
    } catch (err) {
      throw new InputError(`bad ID range "${part}": ${(err as Error).message}`, { code: 'E_RANGE', cause: err });
    }
    if (end < start) throw new InputError(`bad ID range "${part}": the end comes before the start`, { code: 'E_RANGE' });
    ranges.push({ start, end });
  }
  return new RangeSet(ranges);
}
