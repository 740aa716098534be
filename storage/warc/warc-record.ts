import { createHash, hash, randomUUID } from 'node:crypto';
import { sha1Label } from './capture.js';

/** Pure functions that build WARC/1.1 record heads. Bodies are appended by the writer. */
export type WarcType = 'warcinfo' | 'request' | 'response' | 'revisit' | 'resource' | 'metadata';

export const REVISIT_PROFILE = 'http://netpreserve.org/warc/1.1/revisit/identical-payload-digest';

export function newRecordId(): string {
  return `<urn:uuid:${randomUUID()}>`;
}

export function warcDate(d: Date): string {
  return d.toISOString();
}

export function sha1Of(...parts: Uint8Array[]): string {
  // One part (a request head, a small record): the one-shot hash skips the Hash object (~0.6 of ~1.3 µs here).
  if (parts.length === 1) return sha1Label(hash('sha1', parts[0]!, 'buffer'));
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return sha1Label(h.digest());
}

function clean(value: string): string {
  // Header values must not carry CR/LF (a URL or a profile field cannot inject headers).
  return value.replace(/[\r\n]+/g, ' ');
}

/** Serialises the record header block (ending in the blank line); the caller appends block + CRLF CRLF. */
export function recordHead(fields: [string, string | number | undefined][]): Buffer {
  let out = 'WARC/1.1\r\n';
  for (const [k, v] of fields) if (v !== undefined) out += `${k}: ${clean(String(v))}\r\n`;
  return Buffer.from(`${out}\r\n`, 'utf8');
}

/** The `application/warc-fields` body of a warcinfo record. */
export function warcFields(fields: Record<string, string | undefined>): Buffer {
  let out = '';
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out += `${k}: ${clean(v)}\r\n`;
  return Buffer.from(out, 'utf8');
}

export const RECORD_END = Buffer.from('\r\n\r\n');
