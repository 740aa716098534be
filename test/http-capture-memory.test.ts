/**
 * Issue 17: bodies up to the spool threshold stay in memory (read once, written once into the
 * WARC), but all bodies being received together stay under the capturer's memory budget; a body
 * that would go past it is spooled to a file. Real HTTP server on port 0, real spool files.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpCapturer } from '../crawler/fetch/http-capture.js';
import { sha1Label } from '../storage/warc/capture.js';

const KB = 1024;
let tmp: string;
let server: Server;
let base: string;
/** The held response's end, called by the test. */
let finishHeld: (() => void) | undefined;

const bodyOf = (name: string, size: number): Buffer => Buffer.alloc(size, name.charCodeAt(0));

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-capmem-'));
  server = createServer((req, res: ServerResponse) => {
    const size = 600 * KB;
    res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(size) });
    if (req.url === '/held') {
      // Half now, the rest when the test says: the body stays "being received" meanwhile.
      const body = bodyOf('h', size);
      res.write(body.subarray(0, size / 2));
      finishHeld = () => res.end(body.subarray(size / 2));
      return;
    }
    res.end(bodyOf(req.url!.slice(1), size));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  finishHeld?.();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(tmp, { recursive: true, force: true });
});

function capturer(budget: number): HttpCapturer {
  return new HttpCapturer({ userAgent: 't', spoolDir: tmp, connectTimeoutMs: 5000, headersTimeoutMs: 5000, idleTimeoutMs: 60_000, totalTimeoutMs: 120_000, maxBodyBytes: 1 << 30, memoryBudgetBytes: budget });
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

describe('the capturer keeps bodies in memory within one budget for all of them (issue 17)', () => {
  it('bodies received together within the budget stay in memory and give their share back once complete', async () => {
    const cap = capturer(1024 * KB);
    try {
      const held = cap.fetch({ url: `${base}/held` });
      await until(() => cap.bufferedBytes >= 300 * KB);
      // 300 KiB held + 600 KiB = 900 KiB, under 1 MiB: in memory; once complete it no longer counts.
      const b = await cap.fetch({ url: `${base}/b` });
      expect(b.body.kind).toBe('buffer');
      expect(b.body.kind === 'buffer' && b.body.data.equals(bodyOf('b', 600 * KB))).toBe(true);
      expect(cap.bufferedBytes).toBe(300 * KB);
      finishHeld!();
      const h = await held;
      expect(h.body.kind).toBe('buffer');
      expect(cap.bufferedBytes).toBe(0);
    } finally {
      await cap.close();
    }
  });

  it('past the budget the body goes to a spool file with the same bytes and digest', async () => {
    const cap = capturer(700 * KB);
    try {
      const held = cap.fetch({ url: `${base}/held` });
      await until(() => cap.bufferedBytes >= 300 * KB);
      const c = await cap.fetch({ url: `${base}/c` });
      // 300 KiB held + 600 KiB > 700 KiB: spooled.
      expect(c.body.kind).toBe('file');
      const onDisk = await readFile((c.body as { path: string }).path);
      expect(onDisk.equals(bodyOf('c', 600 * KB))).toBe(true);
      expect(c.payloadDigest).toBe(sha1Label(createHash('sha1').update(onDisk).digest()));
      // Spooling gave its share back: only the held body counts.
      expect(cap.bufferedBytes).toBeLessThanOrEqual(600 * KB);
      finishHeld!();
      expect((await held).body.kind).toBe('buffer');
      expect(cap.bufferedBytes).toBe(0);
      // With the budget free again, the next body stays in memory.
      expect((await cap.fetch({ url: `${base}/d` })).body.kind).toBe('buffer');
    } finally {
      await cap.close();
    }
  });
});

describe('max_body_bytes is the most a body may hold, to the byte (issue 21 §5)', () => {
  it('a body of max_body_bytes is whole; one of max_body_bytes + 1 is cut to max_body_bytes and marked truncated', async () => {
    const max = 64 * KB;
    // Sizes by URL; the last byte is sent on its own, so the limit falls on a chunk boundary too.
    const sizes = createServer((req, res) => {
      const size = Number(req.url!.slice(1));
      const body = bodyOf('s', size);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      res.write(body.subarray(0, size - 1), () => setTimeout(() => res.end(body.subarray(size - 1)), 20));
    });
    await new Promise<void>((r) => sizes.listen(0, '127.0.0.1', r));
    const at = `http://127.0.0.1:${(sizes.address() as AddressInfo).port}`;
    const cap = new HttpCapturer({ userAgent: 't', spoolDir: tmp, connectTimeoutMs: 5000, headersTimeoutMs: 5000, idleTimeoutMs: 60_000, totalTimeoutMs: 120_000, maxBodyBytes: max });
    try {
      const got = async (size: number) => {
        const c = await cap.fetch({ url: `${at}/${size}` });
        const bytes = c.body.kind === 'buffer' ? c.body.data : await readFile(c.body.path);
        return { length: bytes.length, truncated: c.truncated };
      };
      expect(await got(max - 1)).toEqual({ length: max - 1, truncated: undefined });
      expect(await got(max)).toEqual({ length: max, truncated: undefined });
      expect(await got(max + 1)).toEqual({ length: max, truncated: 'length' });
      expect(await got(max + 2)).toEqual({ length: max, truncated: 'length' });
    } finally {
      await cap.close();
      sizes.closeAllConnections();
      await new Promise((r) => sizes.close(r));
    }
  });
});
