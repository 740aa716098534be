import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { alreadyCompressed, storedGzipMember, storedGzipMemberParts, writeStoredMember } from '../storage/warc/warc-compress.js';

async function* chunksOf(parts: Buffer[]): AsyncGenerator<Buffer> {
  yield* parts;
}

async function streamed(parts: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await writeStoredMember(chunksOf(parts), async (b) => void out.push(Buffer.from(b)));
  return Buffer.concat(out);
}

describe('gzip members of stored deflate blocks', () => {
  it('streams any chunking into one valid member: empty, exact block multiples, odd sizes', async () => {
    const cases: Buffer[][] = [
      [],
      [Buffer.alloc(0)],
      [randomBytes(65_535)],
      [randomBytes(65_535 * 3)],
      [randomBytes(10), randomBytes(65_536), Buffer.alloc(0), randomBytes(200_001)],
      [randomBytes(1), randomBytes(1)],
    ];
    for (const parts of cases) {
      const whole = Buffer.concat(parts);
      const member = await streamed(parts);
      expect(zlib.gunzipSync(member).equals(whole)).toBe(true);
      // Blocks follow the chunks, but the header and the trailer (CRC-32, size) are those of the
      // member built in one piece; with one chunk the bytes are the same throughout.
      const onePiece = storedGzipMember(whole);
      expect(member.subarray(-8).equals(onePiece.subarray(-8))).toBe(true);
      expect(member.subarray(0, 10).equals(onePiece.subarray(0, 10))).toBe(true);
      if (parts.length === 1) expect(member.equals(onePiece)).toBe(true);
    }
  });

  it('builds the same member from parts without copying them, byte for byte, however the parts fall on block bounds', () => {
    const B = 65_535;
    const cases: Buffer[][] = [
      [randomBytes(100), randomBytes(200)],
      [randomBytes(70_000)],
      [randomBytes(B), randomBytes(B)],
      [randomBytes(B - 1), randomBytes(1), Buffer.alloc(0), randomBytes(B + 1), randomBytes(3)],
      [randomBytes(333), randomBytes(1_000_000), Buffer.from('\r\n\r\n')],
      [Buffer.alloc(0), randomBytes(B * 2), Buffer.alloc(0)],
    ];
    for (const parts of cases) {
      const whole = Buffer.concat(parts);
      const built = storedGzipMemberParts(parts);
      expect(Buffer.concat(built).equals(storedGzipMember(whole))).toBe(true);
      expect(zlib.gunzipSync(Buffer.concat(built)).equals(whole)).toBe(true);
      // Large bodies are referenced, not copied: some output buffer shares the big part's memory.
      const big = parts.find((p) => p.length > 100_000);
      if (big) expect(built.some((b) => b.buffer === big.buffer && b.length > 60_000)).toBe(true);
    }
  });

  it('tells compressed bodies from text by Content-Encoding and type', () => {
    const head = (h: string) => Buffer.from(`HTTP/1.1 200 OK\r\n${h}\r\n\r\n`, 'latin1');
    expect(alreadyCompressed(head('Content-Encoding: gzip'))).toBe(true);
    expect(alreadyCompressed(head('Content-Type: image/jpeg'))).toBe(true);
    expect(alreadyCompressed(head('Content-Type: image/svg+xml'))).toBe(false);
    expect(alreadyCompressed(head('Content-Type: text/html; charset=utf-8'))).toBe(false);
  });
});
