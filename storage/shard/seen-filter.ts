/**
 * A Bloom filter of (URL, payload digest) pairs the shard already holds, so the revisit lookup
 * asks SQLite only when the pair may be there: most captures are of URLs never seen before, and
 * the indexed SELECT cost ~21 µs each on the crawl's busiest thread (BENCHMARKS.md). A false
 * positive costs one SELECT; there are no false negatives for pairs added here.
 */
export class SeenFilter {
  readonly #bits: Uint32Array;
  readonly #mask: number;

  /** Sized for `expected` pairs at ~16 bits each (about 0.05% false positives with 4 probes). */
  constructor(expected: number) {
    let size = 1 << 20;
    while (size < expected * 16 && size < 1 << 30) size *= 2;
    this.#bits = new Uint32Array(size / 32);
    this.#mask = size - 1;
  }

  add(url: string, digest: string): void {
    const [a, b] = hashPair(url, digest);
    for (let i = 0; i < 4; i++) {
      const bit = (a + Math.imul(i, b)) & this.#mask;
      this.#bits[bit >>> 5]! |= 1 << (bit & 31);
    }
  }

  mayHave(url: string, digest: string): boolean {
    const [a, b] = hashPair(url, digest);
    for (let i = 0; i < 4; i++) {
      const bit = (a + Math.imul(i, b)) & this.#mask;
      if ((this.#bits[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

/** Two independent 32-bit FNV-1a style hashes of digest + URL (double hashing for the probes). */
function hashPair(url: string, digest: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  const mix = (s: string): void => {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
    }
  };
  mix(digest);
  mix(url);
  return [a >>> 0, (b | 1) >>> 0];
}
