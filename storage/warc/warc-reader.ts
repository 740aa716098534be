import type { FileHandle } from 'node:fs/promises';
import { GzipMemberError, inflateMemberInBuffer, readMember, type MemberInfo } from './gzip-members.js';
import { openRegular } from './input-file.js';
import type { RawRecordSink, WarcDefect, WarcRecordInfo } from './warc-item.js';
import { WarcParser } from './warc-parser.js';

export type { RawRecordSink, WarcDefect, WarcItem, WarcRecordInfo } from './warc-item.js';

/**
 * Streaming WARC reading (ARCHITECTURE.md "Curator commands"): every record of a file, its digests recomputed on the
 * way, in constant memory. Reads the three layouts found in the wild:
 * - `gzip-per-record`: concatenated gzip members, one record each (lifeboat, wget, warcio, pywb);
 *   records are located by their member's compressed offset and length, and can be copied as is;
 * - `gzip-whole`: one gzip stream around the whole file (`gzip foo.warc`); records have stream positions only;
 * - `plain`: an uncompressed `.warc`; offsets are byte offsets.
 * Damage never throws: a corrupt member, a torn tail, a garbled header or an impossible
 * Content-Length yields a `defect` (file + offset) and reading goes on at the next member
 * (or the next `WARC/1.` line in a plain file).
 */
export type WarcFormat = 'gzip-per-record' | 'gzip-whole' | 'plain' | 'empty' | 'unknown';

export interface ReadWarcOptions {
  /** Largest record header block or HTTP head accepted (default 1 MiB). */
  maxHeadBytes?: number;
  /** Called at each record's start; a returned sink receives the record's uncompressed bytes. */
  rawSink?: (streamOffset: number) => RawRecordSink | undefined;
  /** Skip detection when the caller already knows. */
  format?: WarcFormat;
  /** Believe declared sha1 digests instead of recomputing them (only for a file proven unchanged as a whole). */
  trustSha1Digests?: boolean;
}

/** A record read from a per-record gzip file may carry its compressed member (a view, valid indefinitely). */
export type ReadRecord = WarcRecordInfo & { member?: Buffer };
export type ReadItem = ReadRecord | WarcDefect;

const WINDOW = 4 * 1024 * 1024;
const FAST_MAX_OUTPUT = 16 * 1024 * 1024;
const PLAIN_CHUNK = 1024 * 1024;
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b, 0x08]);

/** Looks at the first bytes (and the first gzip member) to tell the layout apart. */
export async function detectWarcFormat(path: string): Promise<WarcFormat> {
  const fh = await openRegular(path);
  try {
    const { size } = await fh.stat();
    if (size === 0) return 'empty';
    const buf = Buffer.alloc(Math.min(WINDOW, size));
    await fh.read(buf, 0, buf.length, 0);
    if (buf.subarray(0, 5).toString('latin1') === 'WARC/') return 'plain';
    if (buf[0] !== 0x1f || buf[1] !== 0x8b) return 'unknown';
    let first: { data: Buffer; length: number } | undefined;
    try {
      first = inflateMemberInBuffer(buf, 0, FAST_MAX_OUTPUT);
    } catch {
      return 'gzip-per-record';
    }
    if (!first) return buf.length < size ? 'gzip-whole' : 'gzip-per-record';
    return holdsOneRecord(first.data) ? 'gzip-per-record' : 'gzip-whole';
  } finally {
    await fh.close();
  }
}

function holdsOneRecord(data: Buffer): boolean {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(data.subarray(0, end + 2).toString('latin1'));
  if (!m) return false;
  const recordEnd = end + 4 + Number(m[1]) + 4;
  return recordEnd <= data.length && data.subarray(recordEnd).every((b) => b === 13 || b === 10);
}

/** Every record and defect of one WARC file, in file order. */
export async function* readWarc(path: string, options: ReadWarcOptions = {}): AsyncGenerator<ReadItem> {
  const format = options.format ?? (await detectWarcFormat(path));
  const parser = new WarcParser({ file: path, maxHeadBytes: options.maxHeadBytes, rawSink: options.rawSink, trustSha1Digests: options.trustSha1Digests });
  if (format === 'empty') {
    yield { kind: 'defect', file: path, offset: 0, what: 'empty WARC file' };
    return;
  }
  const fh = await openRegular(path);
  try {
    const { size } = await fh.stat();
    if (format === 'plain') yield* readPlain(fh, size, parser);
    else {
      parser.recordsSpanMembers = format === 'gzip-whole';
      yield* readGzip(fh, size, path, parser);
    }
  } finally {
    await fh.close();
  }
}

async function* readPlain(fh: FileHandle, size: number, parser: WarcParser): AsyncGenerator<ReadItem> {
  parser.streamSize = size;
  let pos = 0;
  while (pos < size) {
    const buf = Buffer.alloc(Math.min(PLAIN_CHUNK, size - pos));
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    await parser.write(buf.subarray(0, bytesRead), pos);
    if (parser.resyncFrom !== undefined) {
      pos = parser.resyncFrom;
      parser.resyncFrom = undefined;
    } else {
      pos += bytesRead;
      if (parser.seeking && bytesRead > 8 && pos < size) pos -= 7;
    }
    yield* parser.take();
  }
  await parser.end(size);
  yield* parser.take();
}

/** The decompressed chunks of one member, pulled (readMember pushes; a small queue turns it round). */
async function* memberChunks(fh: FileHandle, offset: number, size: number): AsyncGenerator<Buffer, MemberInfo> {
  const queue: Buffer[] = [];
  let wake: (() => void) | undefined;
  let resume: (() => void) | undefined;
  let settled = false;
  let abandoned = false;
  let error: unknown;
  let info: MemberInfo | undefined;
  readMember(fh, offset, size, async (chunk) => {
    if (abandoned) throw new Error('reader abandoned');
    queue.push(chunk);
    wake?.();
    if (queue.length >= 4) await new Promise<void>((r) => (resume = r));
  }).then(
    (i) => ((info = i), (settled = true), wake?.()),
    (e: unknown) => ((error = e), (settled = true), wake?.()),
  );
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk) {
        if (queue.length < 4) {
          const r = resume;
          resume = undefined;
          r?.();
        }
        yield chunk;
        continue;
      }
      if (settled) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  } finally {
    abandoned = true;
    resume?.();
  }
  if (error) throw error;
  return info!;
}

/** The next offset at or after `from` where a whole gzip member can be read, or -1. */
async function nextGoodMember(fh: FileHandle, from: number, size: number): Promise<number> {
  let pos = from;
  while (pos < size) {
    const buf = Buffer.alloc(Math.min(WINDOW, size - pos));
    await fh.read(buf, 0, buf.length, pos);
    let at = buf.indexOf(GZIP_MAGIC);
    while (at >= 0) {
      try {
        await readMember(fh, pos + at, size, () => {});
        return pos + at;
      } catch {
        at = buf.indexOf(GZIP_MAGIC, at + 1);
      }
    }
    if (buf.length <= 3) break;
    pos += buf.length - 2;
  }
  return -1;
}

async function* readGzip(fh: FileHandle, size: number, path: string, parser: WarcParser): AsyncGenerator<ReadItem> {
  let win = Buffer.alloc(0);
  let winStart = 0;
  let offset = 0;
  let streamPos = 0;
  while (offset < size) {
    if (offset < winStart || offset + 64 * 1024 > winStart + win.length) {
      if (winStart + win.length < size || offset < winStart) {
        win = Buffer.allocUnsafe(Math.min(WINDOW, size - offset));
        const { bytesRead } = await fh.read(win, 0, win.length, offset);
        win = win.subarray(0, bytesRead);
        winStart = offset;
      }
    }
    let failure: GzipMemberError | undefined;
    try {
      const fast = inflateMemberInBuffer(win.subarray(offset - winStart), offset, FAST_MAX_OUTPUT);
      if (!fast && winStart !== offset && winStart + win.length < size) {
        winStart = size; // force a refill at this member and try again
        continue;
      }
      if (fast) {
        parser.beginMember(offset, streamPos);
        await parser.write(fast.data, streamPos);
        streamPos += fast.data.length;
        await parser.endMember(fast.length, streamPos);
        const memberBytes = win.subarray(offset - winStart, offset - winStart + fast.length);
        for (const item of parser.take()) {
          if (item.kind === 'record' && item.exact && item.offset === offset) yield { ...item, member: memberBytes };
          else yield item;
        }
        offset += fast.length;
        continue;
      }
      // A large member: stream it.
      parser.beginMember(offset, streamPos);
      const chunks = memberChunks(fh, offset, size);
      let step = await chunks.next();
      while (!step.done) {
        await parser.write(step.value, streamPos);
        streamPos += step.value.length;
        yield* parser.take();
        step = await chunks.next();
      }
      await parser.endMember(step.value.length, streamPos);
      yield* parser.take();
      offset += step.value.length;
    } catch (err) {
      if (!(err instanceof GzipMemberError)) throw err;
      failure = err;
    }
    if (failure) {
      await parser.abortMember();
      yield* parser.take();
      const next = await nextGoodMember(fh, offset + 1, size);
      const skipped = (next < 0 ? size : next) - offset;
      const what = failure.message.replace(/ \(gzip member at offset \d+\)$/, '');
      yield { kind: 'defect', file: path, offset, what: `${what}; ${skipped} bytes skipped${next < 0 ? ' to the end of the file' : ` to the next good member at ${next}`}` };
      if (next < 0) break;
      offset = next;
      winStart = size;
      win = Buffer.alloc(0);
    }
  }
  await parser.end(streamPos);
  yield* parser.take();
}
