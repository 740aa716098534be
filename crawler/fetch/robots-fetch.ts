import { open } from 'node:fs/promises';
import zlib from 'node:zlib';
import type { Capture } from '../../storage/warc/capture.js';
import { releaseBody, type HttpCapturer } from './http-capture.js';
import { MAX_ROBOTS_BYTES, type RobotsResponse } from './robots.js';
import type { ScopeGuard } from './scope-guard.js';

/**
 * How a crawl fetches robots.txt (RFC 9309): at most the first 500 KiB are downloaded (the
 * capture stops reading there, so an endless robots.txt costs 500 KiB, not `max_body_bytes`),
 * decoded (gzip, deflate, br) to at most 500 KiB, and up to five redirects are followed, each
 * through the scope guard. A redirect that leaves scope, or a sixth one, ends with that 3xx,
 * which the policy reads as "unavailable". Network errors reject (the policy: "unreachable").
 */
export const MAX_ROBOTS_REDIRECTS = 5;

export function robotsFetcher(capturer: HttpCapturer, guard: ScopeGuard): (robotsUrl: string) => Promise<RobotsResponse> {
  return async (robotsUrl) => {
    let url = robotsUrl;
    for (let hop = 0; ; hop++) {
      guard.checkUrl(url);
      const c = await capturer.fetch({ url, headers: { accept: 'text/plain,*/*;q=0.5' }, maxBodyBytes: MAX_ROBOTS_BYTES });
      try {
        const location = c.status >= 300 && c.status < 400 ? /^location:[ \t]*(.*)$/im.exec(c.responseHead.toString('latin1'))?.[1]?.trim() : undefined;
        if (location === undefined) return { status: c.status, body: c.status >= 200 && c.status < 300 ? await robotsText(c) : '' };
        if (hop >= MAX_ROBOTS_REDIRECTS) return { status: c.status, body: '', note: `more than ${MAX_ROBOTS_REDIRECTS} redirects` };
        let next: string;
        try {
          next = new URL(location, url).href;
          guard.checkUrl(next);
        } catch (err) {
          return { status: c.status, body: '', note: `redirect refused: ${(err as Error).message}` };
        }
        url = next;
      } finally {
        await releaseBody(c.body);
      }
    }
  };
}

/** The first 500 KiB of the body, Content-Encoding undone; whatever lies beyond is ignored. */
async function robotsText(c: Capture): Promise<string> {
  let raw: Buffer;
  if (c.body.kind === 'buffer') raw = c.body.data.subarray(0, MAX_ROBOTS_BYTES);
  else {
    const fh = await open(c.body.path, 'r');
    try {
      const buf = Buffer.alloc(Math.min(MAX_ROBOTS_BYTES, c.body.length));
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      raw = buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
  const encoding = /^content-encoding:[ \t]*(.*)$/im.exec(c.responseHead.toString('latin1'))?.[1]?.trim().toLowerCase();
  const decoder =
    encoding === 'gzip' || encoding === 'x-gzip' ? zlib.createGunzip() : encoding === 'deflate' ? zlib.createInflate() : encoding === 'br' ? zlib.createBrotliDecompress() : undefined;
  if (!decoder) return raw.toString('utf8');
  return new Promise<string>((resolve) => {
    const out: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      decoder.removeAllListeners('data');
      decoder.destroy();
      resolve(Buffer.concat(out).subarray(0, MAX_ROBOTS_BYTES).toString('utf8'));
    };
    decoder.on('data', (chunk: Buffer) => {
      out.push(chunk);
      size += chunk.length;
      if (size >= MAX_ROBOTS_BYTES) done();
    });
    // A body cut short or corrupt after some good bytes: keep what decoded.
    decoder.on('error', done);
    decoder.on('end', done);
    decoder.end(raw);
  });
}
