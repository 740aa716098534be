/**
 * The neutral capture model: what the WARC writer consumes. Produced by crawler/ from undici
 * (HTTP capture) or from the browser; imports neither.
 */

/** A response body: small ones in memory, large ones spooled to a temporary file. */
export type BodySource = { kind: 'buffer'; data: Buffer } | { kind: 'file'; path: string; length: number };

/** One part of a WARC record's block: bytes in hand, or a body (possibly spooled to a file). */
export type BlockPart = Buffer | BodySource;

export interface Capture {
  url: string;
  method: string;
  /** The request line and headers exactly as sent, ending in CRLF CRLF. */
  requestHead: Buffer;
  requestBody?: Buffer;
  /** The status line and headers as received (chunked framing removed and noted), ending in CRLF CRLF. */
  responseHead: Buffer;
  status: number;
  body: BodySource;
  /** `sha1:BASE32` of the body as transferred (content-encoding kept). */
  payloadDigest: string;
  /** `sha1:BASE32` of responseHead + body. */
  blockDigest: string;
  fetchedAt: Date;
  remoteAddress?: string;
  /** WARC-Truncated reason when the body was cut short by a limit. */
  truncated?: 'length' | 'time' | 'disconnect';
  contentType?: string;
}

export function bodyLength(body: BodySource): number {
  return body.kind === 'buffer' ? body.data.length : body.length;
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding (a SHA-1 digest is exactly 32 characters). */
export function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

export function sha1Label(digest: Uint8Array): string {
  return `sha1:${base32(digest)}`;
}
