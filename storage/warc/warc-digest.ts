import { createHash, type Hash } from 'node:crypto';
import { sha1Label } from './capture.js';

/**
 * WARC digest labels as the tools in the wild write them: `sha1:BASE32` (the form wayback
 * tools index), `sha1:hex`, `sha256:hex`, `sha256:BASE32`, `sha-256:…`, `md5:…`, base64 too.
 * A label is compared by the bytes it decodes to, so every spelling of the same digest matches.
 */
export interface ParsedDigest {
  algo: 'sha1' | 'sha256' | 'sha512' | 'md5';
  bytes: Buffer;
}

const ALGOS: Record<string, { algo: ParsedDigest['algo']; size: number }> = {
  sha1: { algo: 'sha1', size: 20 },
  'sha-1': { algo: 'sha1', size: 20 },
  sha256: { algo: 'sha256', size: 32 },
  'sha-256': { algo: 'sha256', size: 32 },
  sha512: { algo: 'sha512', size: 64 },
  'sha-512': { algo: 'sha512', size: 64 },
  md5: { algo: 'md5', size: 16 },
};

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function fromBase32(text: string): Buffer | undefined {
  const clean = text.toUpperCase().replace(/=+$/, '');
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const v = B32.indexOf(ch);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** Decodes a digest label; undefined when the algorithm or encoding is not recognised. */
export function parseDigest(label: string | undefined): ParsedDigest | undefined {
  if (!label) return undefined;
  const colon = label.indexOf(':');
  if (colon < 0) return undefined;
  const spec = ALGOS[label.slice(0, colon).trim().toLowerCase()];
  if (!spec) return undefined;
  const text = label.slice(colon + 1).trim();
  const candidates: (Buffer | undefined)[] = [];
  if (/^[0-9a-fA-F]+$/.test(text) && text.length === spec.size * 2) candidates.push(Buffer.from(text, 'hex'));
  if (/^[A-Za-z2-7]+=*$/.test(text)) candidates.push(fromBase32(text));
  if (/^[A-Za-z0-9+/_-]+=*$/.test(text)) candidates.push(Buffer.from(text, 'base64'));
  const bytes = candidates.find((b) => b !== undefined && b.length === spec.size);
  return bytes ? { algo: spec.algo, bytes } : undefined;
}

/** `sha1:BASE32` for any sha1 label (hex or base32); undefined for other algorithms. */
export function normaliseSha1(label: string | undefined): string | undefined {
  const d = parseDigest(label);
  return d?.algo === 'sha1' ? sha1Label(d.bytes) : undefined;
}

/**
 * Hashes a byte stream with sha1 (always: the form lifeboat indexes and deduplicates by) and,
 * when a declared label uses another algorithm, with that one too; then checks the label.
 */
export class DigestCheck {
  readonly #sha1: Hash | undefined;
  readonly #other: Hash | undefined;
  readonly #declared: ParsedDigest | undefined;
  readonly declaredLabel: string | undefined;
  /** The declared sha1 was taken on trust: nothing was hashed, `ok` is undefined (not checked). */
  readonly trusted: boolean;
  #sha1Digest: Buffer | undefined;
  #otherDigest: Buffer | undefined;

  /**
   * `trustSha1`: a declared sha1 label is believed, not recomputed (`merge --index-only` on a
   * file whose sha256 matched its shard.json: the whole file is already proven unchanged).
   */
  constructor(declared: string | undefined, trustSha1 = false) {
    this.declaredLabel = declared;
    this.#declared = parseDigest(declared);
    this.trusted = trustSha1 && this.#declared?.algo === 'sha1';
    if (this.trusted) {
      this.#sha1Digest = this.#declared!.bytes;
      return;
    }
    this.#sha1 = createHash('sha1');
    if (this.#declared && this.#declared.algo !== 'sha1') this.#other = createHash(this.#declared.algo);
  }

  update(chunk: Buffer): void {
    this.#sha1?.update(chunk);
    this.#other?.update(chunk);
  }

  #finish(): void {
    if (this.#sha1Digest) return;
    this.#sha1Digest = this.#sha1!.digest();
    this.#otherDigest = this.#other?.digest();
  }

  /** `sha1:BASE32` of everything hashed. */
  get sha1(): string {
    this.#finish();
    return sha1Label(this.#sha1Digest!);
  }

  /** True/false when a recognised label was declared; undefined when none (or an unknown algorithm). */
  get ok(): boolean | undefined {
    if (this.trusted) return undefined;
    this.#finish();
    if (!this.#declared) return this.declaredLabel === undefined ? undefined : false;
    const actual = this.#declared.algo === 'sha1' ? this.#sha1Digest! : this.#otherDigest!;
    return actual.equals(this.#declared.bytes);
  }
}

/**
 * Removes HTTP/1.1 chunked framing on the fly, handing the de-chunked bytes to `sink`. `valid`
 * says whether the bytes really were well-formed chunked encoding through the final chunk.
 */
export class Dechunker {
  #state: 'size' | 'ext' | 'sizeLf' | 'data' | 'dataCr' | 'dataLf' | 'trailer' | 'done' | 'bad' = 'size';
  #size = 0;
  #digits = 0;
  #left = 0;
  #trailerLine = 0;
  constructor(private readonly sink: (chunk: Buffer) => void) {}

  get valid(): boolean {
    return this.#state === 'done';
  }

  write(buf: Buffer): void {
    let i = 0;
    while (i < buf.length && this.#state !== 'bad') {
      const c = buf[i]!;
      switch (this.#state) {
        case 'size': {
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (v >= 0 && this.#digits < 13) {
            this.#size = this.#size * 16 + v;
            this.#digits++;
          } else if (this.#digits > 0 && (c === 59 || c === 32 || c === 9)) this.#state = 'ext';
          else if (this.#digits > 0 && c === 13) this.#state = 'sizeLf';
          else this.#state = 'bad';
          i++;
          break;
        }
        case 'ext':
          if (c === 13) this.#state = 'sizeLf';
          i++;
          break;
        case 'sizeLf':
          if (c !== 10) this.#state = 'bad';
          else if (this.#size === 0) {
            this.#state = 'trailer';
            this.#trailerLine = 0;
          } else {
            this.#state = 'data';
            this.#left = this.#size;
          }
          i++;
          break;
        case 'data': {
          const n = Math.min(this.#left, buf.length - i);
          this.sink(buf.subarray(i, i + n));
          this.#left -= n;
          i += n;
          if (this.#left === 0) this.#state = 'dataCr';
          break;
        }
        case 'dataCr':
          this.#state = c === 13 ? 'dataLf' : 'bad';
          i++;
          break;
        case 'dataLf':
          if (c === 10) {
            this.#state = 'size';
            this.#size = 0;
            this.#digits = 0;
          } else this.#state = 'bad';
          i++;
          break;
        case 'trailer':
          // Trailer lines until an empty line (CRLF on its own).
          if (c === 10) {
            if (this.#trailerLine <= 1) this.#state = 'done';
            this.#trailerLine = 0;
          } else if (c !== 13) this.#trailerLine += 2;
          else this.#trailerLine += 1;
          i++;
          break;
        case 'done':
          if (c !== 13 && c !== 10) this.#state = 'bad';
          i++;
          break;
      }
    }
  }
}
