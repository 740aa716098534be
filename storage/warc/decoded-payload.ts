import { closeSync, openSync, readSync } from 'node:fs';
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
  const body = decodePayload(member, maxBytes)?.body;
  return body ? sha1Of(body) : undefined;
}

export interface DecodedPayload {
  /** The payload as the user saw it (no chunked framing, no Content-Encoding). */
  body: Buffer;
  /** The response's Content-Type, as sent. */
  contentType: string;
}

/**
 * One record's payload read synchronously (`lifeboat search` and export read a post's page to index
 * its words). undefined when the record is above `maxBytes` or cannot be decoded here.
 */
export function readDecodedPayload(warcPath: string, offset: number, length: number, maxBytes: number): DecodedPayload | undefined {
  if (length > maxBytes) return undefined;
  const member = Buffer.alloc(length);
  let fd: number | undefined;
  try {
    fd = openSync(warcPath, 'r');
    if (readSync(fd, member, 0, length, offset) !== length) return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return decodePayload(member, maxBytes);
}

/** A record (its own gzip member, or stored uncompressed) to its decoded payload. */
function decodePayload(member: Buffer, maxBytes: number): DecodedPayload | undefined {
  try {
    const raw = member[0] === 0x1f && member[1] === 0x8b ? gunzipSync(member, { maxOutputLength: maxBytes }) : member;
    const warcEnd = raw.indexOf('\r\n\r\n');
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(raw.subarray(0, warcEnd + 2).toString('latin1'));
    if (warcEnd < 0 || !cl) return undefined;
    const block = raw.subarray(warcEnd + 4, warcEnd + 4 + Number(cl[1]));
    const httpEnd = block.indexOf('\r\n\r\n');
    if (httpEnd < 0) return undefined;
    const head = block.subarray(0, httpEnd).toString('latin1');
    const field = (name: string): string => new RegExp(`\\r\\n${name}:[ \\t]*([^\\r]*)`, 'i').exec(head)?.[1]?.trim() ?? '';
    let body: Buffer = block.subarray(httpEnd + 4);
    if (field('transfer-encoding').toLowerCase().includes('chunked')) {
      const parts: Buffer[] = [];
      const d = new Dechunker((c) => parts.push(Buffer.from(c)));
      d.write(body);
      if (!d.valid) return undefined;
      body = Buffer.concat(parts);
    }
    for (const enc of field('content-encoding').toLowerCase().split(',').map((e) => e.trim()).filter((e) => e && e !== 'identity').reverse()) {
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
    return { body, contentType: field('content-type') };
  } catch {
    return undefined;
  }
}
