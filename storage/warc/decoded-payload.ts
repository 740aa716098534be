import { open } from 'node:fs/promises';
import { brotliDecompressSync, gunzipSync, inflateRawSync, inflateSync } from 'node:zlib';
import { Dechunker } from './warc-digest.js';
import { sha1Of } from './warc-record.js';

/**
 * The digest of a response's payload as the user saw it (issue 15 §6): chunked framing removed and
 * the Content-Encoding (gzip, x-gzip, deflate, br) undone. Two captures of one URL whose payloads
 * differ only by how they were transferred — a foreign tool fetching without compression, lifeboat
 * fetching gzip or br — have the same decoded digest. Reads one record (its own gzip member) from a
 * merged WARC. undefined when the record cannot be decoded here (an unknown encoding such as zstd,
 * a record above `maxBytes`, damaged compression): such versions are reported as different.
 */
export async function decodedDigest(warcPath: string, offset: number, length: number, maxBytes = 256 * 1024 * 1024): Promise<string | undefined> {
  if (length > maxBytes) return undefined;
  const fh = await open(warcPath, 'r');
  const member = Buffer.alloc(length);
  try {
    await fh.read(member, 0, length, offset);
  } finally {
    await fh.close();
  }
  try {
    const raw = gunzipSync(member, { maxOutputLength: maxBytes });
    const warcEnd = raw.indexOf('\r\n\r\n');
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(raw.subarray(0, warcEnd + 2).toString('latin1'));
    if (warcEnd < 0 || !cl) return undefined;
    const block = raw.subarray(warcEnd + 4, warcEnd + 4 + Number(cl[1]));
    const httpEnd = block.indexOf('\r\n\r\n');
    if (httpEnd < 0) return undefined;
    const head = block.subarray(0, httpEnd).toString('latin1');
    const field = (name: string): string => new RegExp(`\\r\\n${name}:[ \\t]*([^\\r]*)`, 'i').exec(head)?.[1]?.trim().toLowerCase() ?? '';
    let body: Buffer = block.subarray(httpEnd + 4);
    if (field('transfer-encoding').includes('chunked')) {
      const parts: Buffer[] = [];
      const d = new Dechunker((c) => parts.push(Buffer.from(c)));
      d.write(body);
      if (!d.valid) return undefined;
      body = Buffer.concat(parts);
    }
    for (const enc of field('content-encoding').split(',').map((e) => e.trim()).filter((e) => e && e !== 'identity').reverse()) {
      if (enc === 'gzip' || enc === 'x-gzip') body = gunzipSync(body, { maxOutputLength: maxBytes });
      else if (enc === 'br') body = brotliDecompressSync(body, { maxOutputLength: maxBytes });
      else if (enc === 'deflate') {
        try {
          body = inflateSync(body, { maxOutputLength: maxBytes });
        } catch {
          body = inflateRawSync(body, { maxOutputLength: maxBytes }); // servers that send raw deflate
        }
      } else return undefined;
    }
    return sha1Of(body);
  } catch {
    return undefined;
  }
}
