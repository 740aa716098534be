/**
 * Issue 26: the minimal archiver, the yardstick of `npm run bench`. Per URL of a list it does only
 * the work an archive cannot skip, in plain Node: a keep-alive GET (node:http); SHA-1 payload and
 * block digests of the response and a block digest of the request; one gzip member per record
 * (level 6, stored for bodies that are already compressed and for records under 1 KiB, the rule
 * lifeboat follows); one append of both records to a WARC; JSON.parse of JSON bodies; one SQLite
 * row per URL, committed in batches of 256 after an fsync of the WARC. No robots, scope, retries,
 * revisits, extraction of pages or progress. Prints the body bytes received.
 *
 *   node dist/scripts/bench/bench-minimal.js URLS.txt CONCURRENCY OUT-DIR
 */
import { createHash, randomUUID } from 'node:crypto';
import { fsync, openSync, writevSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import zlib from 'node:zlib';
import Database from 'better-sqlite3';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function sha1(h: ReturnType<typeof createHash>): string {
  let out = 'sha1:';
  let bits = 0;
  let value = 0;
  for (const b of h.digest()) {
    value = ((value << 8) | b) & 0xffff;
    for (bits += 8; bits >= 5; bits -= 5) out += B32[(value >>> (bits - 5)) & 31];
  }
  return out;
}

const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
/** One gzip member of stored deflate blocks around views of `parts` (the body is not copied). */
function storedMember(parts: Buffer[]): Buffer[] {
  let crc = 0;
  let left = 0;
  for (const p of parts) (crc = zlib.crc32(p, crc)), (left += p.length);
  const total = left;
  const out: Buffer[] = [GZIP_HEADER];
  let room = 0;
  const block = (): void => {
    room = Math.min(65535, left);
    left -= room;
    out.push(Buffer.from([left === 0 ? 1 : 0, room & 255, room >> 8, ~room & 255, (~room >> 8) & 255]));
  };
  if (total === 0) block();
  for (const p of parts) {
    for (let at = 0; at < p.length; ) {
      if (room === 0) block();
      const take = Math.min(room, p.length - at);
      out.push(p.subarray(at, at + take));
      at += take;
      room -= take;
    }
  }
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(total % 2 ** 32, 4);
  return [...out, trailer];
}
const member = (parts: Buffer[], stored: boolean, length: number): Buffer[] => (stored || length < 1024 ? storedMember(parts) : [zlib.gzipSync(Buffer.concat(parts), { level: 6 })]);

function warcHead(fields: [string, string | number][]): Buffer {
  return Buffer.from(`WARC/1.1\r\n${fields.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
}
const END = Buffer.from('\r\n\r\n');

const [list, concurrency, outDir] = process.argv.slice(2);
if (!list || !concurrency || !outDir) throw new Error('usage: bench-minimal.js URLS.txt CONCURRENCY OUT-DIR');
const urls = (await readFile(list, 'utf8')).split('\n').filter(Boolean);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) });
const fd = openSync(join(outDir, 'minimal.warc.gz'), 'a');
const db = new Database(join(outDir, 'minimal.sqlite'));
db.pragma('journal_mode = WAL');
db.exec('CREATE TABLE IF NOT EXISTS captures (url TEXT PRIMARY KEY, status INTEGER, record_id TEXT, warc_offset INTEGER, warc_length INTEGER, payload_digest TEXT)');
const insert = db.prepare('INSERT OR REPLACE INTO captures VALUES (?, ?, ?, ?, ?, ?)');
const commitRows = db.transaction((rows: unknown[][]) => rows.forEach((r) => insert.run(...r)));
let offset = 0;
let bodyBytes = 0;
let batch: unknown[][] = [];
const commit = (rows: unknown[][]): Promise<void> => new Promise((res, rej) => fsync(fd, (err) => (err ? rej(err) : (commitRows(rows), res()))));

function get(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: { 'user-agent': 'minimal-archiver', 'accept-encoding': 'gzip, deflate, br', accept: '*/*' } }, (res) => {
      const payload = createHash('sha1');
      const block = createHash('sha1');
      let head = `HTTP/1.1 ${res.statusCode} ${res.statusMessage}\r\n`;
      for (let i = 0; i < res.rawHeaders.length; i += 2) head += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
      const responseHead = Buffer.from(`${head}\r\n`, 'latin1');
      block.update(responseHead);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => (payload.update(c), block.update(c), chunks.push(c)));
      res.on('error', reject);
      res.on('end', () => {
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        bodyBytes += body.length;
        const type = String(res.headers['content-type'] ?? '');
        const encoding = res.headers['content-encoding'];
        if (type.includes('json')) JSON.parse((encoding === 'gzip' ? zlib.gunzipSync(body) : body).toString('utf8'));
        const stored = (encoding !== undefined && encoding !== 'identity') || /^(image|video|audio)\//.test(type);
        const date = new Date().toISOString();
        const [responseId, requestId] = [`<urn:uuid:${randomUUID()}>`, `<urn:uuid:${randomUUID()}>`];
        const payloadDigest = sha1(payload);
        const respHead = warcHead([['WARC-Type', 'response'], ['WARC-Record-ID', responseId], ['WARC-Date', date], ['WARC-Target-URI', url], ['WARC-Payload-Digest', payloadDigest], ['WARC-Block-Digest', sha1(block)], ['Content-Type', 'application/http;msgtype=response'], ['Content-Length', responseHead.length + body.length]]);
        const requestHead = Buffer.from((req as unknown as { _header: string })._header, 'latin1');
        const reqHead = warcHead([['WARC-Type', 'request'], ['WARC-Record-ID', requestId], ['WARC-Date', date], ['WARC-Target-URI', url], ['WARC-Concurrent-To', responseId], ['WARC-Block-Digest', sha1(createHash('sha1').update(requestHead))], ['Content-Type', 'application/http;msgtype=request'], ['Content-Length', requestHead.length]]);
        const parts = [...member([respHead, responseHead, body, END], stored, respHead.length + responseHead.length + body.length), ...member([reqHead, requestHead, END], false, reqHead.length + requestHead.length)];
        const length = writevSync(fd, parts);
        batch.push([url, res.statusCode, responseId, offset, length, payloadDigest]);
        offset += length;
        if (batch.length >= 256) void commit(batch.splice(0)).catch(reject);
        resolve();
      });
    });
    req.on('error', reject);
  });
}

let next = 0;
await Promise.all(Array.from({ length: Number(concurrency) }, async () => {
  while (next < urls.length) await get(urls[next++]!);
}));
await commit(batch);
agent.destroy();
db.close();
process.stdout.write(`${bodyBytes}\n`);
