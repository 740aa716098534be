import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Capture } from '../../storage/warc/capture.js';
import { mergeShards } from '../../storage/curate/merge.js';
import { ShardDb, type CaptureRow } from '../../storage/shard/shard-db.js';
import { writeManifest } from '../../storage/shard/shard-manifest.js';
import { sha1Of } from '../../storage/warc/warc-record.js';
import { WarcWriter } from '../../storage/warc/warc-writer.js';
import { shardDbPath, warcPath, warcsDir } from '../../storage/shard/layout.js';

/**
 * Merge throughput beside `cat` of the same bytes (the streaming ceiling), and the merge's peak
 * RSS, on generated shards (default 4 × 560 MB, adjacent shards overlapping by a quarter so the
 * merge deduplicates). Each post: a small JSON API response, an HTML page, and an
 * incompressible media file (deterministic per ID, so overlapping shards hold identical
 * payloads). The merge runs in a child process so its RSS is its own.
 *
 *   npx tsc -p tsconfig.json --outDir /tmp/lb-build && node /tmp/lb-build/scripts/bench-merge.js
 */
export interface MergeBenchResult {
  inputBytes: number;
  inputFiles: number;
  records: number;
  catSeconds: number;
  catMBps: number;
  mergeSeconds: number;
  mergeMBps: number;
  ratio: number;
  mergePeakRssMB: number;
  rssSamplesMB: number[];
  recordsKept: number;
  duplicates: number;
  outputBytes: number;
}

const MB = 1024 * 1024;

function media(id: number, size: number): Buffer {
  const key = createHash('sha256').update('bench').digest().subarray(0, 16);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(id, 12);
  return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(size));
}

function capture(url: string, contentType: string, body: Buffer, at: Date): Capture {
  const u = new URL(url);
  const requestHead = Buffer.from(`GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUser-Agent: lifeboat-bench\r\n\r\n`);
  const responseHead = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`);
  return { url, method: 'GET', requestHead, responseHead, status: 200, body: { kind: 'buffer', data: body }, payloadDigest: sha1Of(body), blockDigest: sha1Of(responseHead, body), fetchedAt: at, contentType };
}

export async function generateShard(dir: string, start: number, end: number, mediaBytes: number): Promise<number> {
  await mkdir(warcsDir(dir), { recursive: true });
  const db = new ShardDb(shardDbPath(dir));
  const warcs: { name: string; size: number; sha256: string; records: number }[] = [];
  const writer = new WarcWriter({
    dir: warcsDir(dir), prefix: 'bench', node: `n${start}`, maxFileBytes: 256 * MB, warcinfo: { software: 'lifeboat-bench' }, gzipLevel: 1,
    onFileClosed: (w) => void warcs.push(w),
  });
  const at = new Date('2024-05-01T00:00:00Z');
  db.setMeta('ranges', JSON.stringify([[start, end]]));
  for (let id = start; id <= end; id++) {
    const rows: CaptureRow[] = [];
    for (const [name, url, ct, body] of [
      ['post', `http://bench.test/api/v1/posts/${id}`, 'application/json', Buffer.from(JSON.stringify({ id, text: `post ${id} `.repeat(20) }))],
      ['page', `http://bench.test/p/${id}`, 'text/html', Buffer.from(`<html><body><p>${`post ${id} `.repeat(60)}</p></body></html>`)],
      ['media', `http://bench.test/media/${id}.jpg`, 'image/jpeg', media(id, mediaBytes / 2 + ((id * 7919) % mediaBytes))],
    ] as const) {
      const c = capture(url, ct, body, at);
      const w = await writer.writeCapture(c);
      rows.push({ postId: id, name, url, status: 200, request: w.request, response: w.response, payloadDigest: c.payloadDigest, fetchedAt: at.toISOString(), revisitOf: null, contentType: ct, bodyBytes: body.length });
    }
    db.transaction(() => {
      for (const r of rows) db.recordCapture(r);
      db.recordOutcome({ id, status: 'archived', httpStatus: 200, attempts: 1, lastError: null });
    });
  }
  await writer.close();
  await writeManifest(dir, { format: 'lifeboat-shard-1', software: 'lifeboat-bench', profile: 'bench', node: `n${start}`, ranges: `${start}-${end}`, counts: db.counts(), warcs, updated_at: new Date().toISOString() });
  db.close();
  return (end - start + 1) * 6 + warcs.length;
}

async function timeCat(files: string[]): Promise<number> {
  const t = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const p = spawn('cat', files, { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
  });
  return Number(process.hrtime.bigint() - t) / 1e9;
}

async function mergeChild(inputs: string[], out: string): Promise<void> {
  const samples: number[] = [];
  let next = 0;
  const t = process.hrtime.bigint();
  const r = await mergeShards({
    inputs, out,
    onProgress: (p) => {
      if (p.bytesRead >= next) {
        samples.push(Math.round(process.memoryUsage().rss / MB));
        next = p.bytesRead + 128 * MB;
      }
    },
  });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  process.stdout.write(`${JSON.stringify({ seconds, peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024), samples, kept: r.recordsKept, duplicates: r.duplicates, written: r.bytesWritten, defects: r.defectCount })}\n`);
}

export async function runMergeBench(options: { shards?: number; shardBytes?: number; mediaBytes?: number; log?: (s: string) => void } = {}): Promise<MergeBenchResult> {
  const log = options.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const shards = options.shards ?? 4;
  const mediaBytes = options.mediaBytes ?? 256 * 1024;
  const perPost = mediaBytes + 2000;
  const postsPerShard = Math.ceil((options.shardBytes ?? 560 * MB) / perPost);
  const step = Math.floor(postsPerShard * 0.75);
  const root = await mkdtemp(join(tmpdir(), 'lifeboat-bench-merge-'));
  try {
    let records = 0;
    const inputs: string[] = [];
    for (let s = 0; s < shards; s++) {
      const dir = join(root, `shard-${s}`);
      log(`generating shard ${s + 1}/${shards} (${postsPerShard} posts)`);
      records += await generateShard(dir, 1 + s * step, s * step + postsPerShard, mediaBytes);
      inputs.push(dir);
    }
    const files: string[] = [];
    let inputBytes = 0;
    for (const dir of inputs) {
      for (const n of await readdir(warcsDir(dir))) {
        files.push(warcPath(dir, n));
        inputBytes += (await stat(warcPath(dir, n))).size;
      }
    }
    await timeCat(files); // warm the page cache the same way for both
    const catSeconds = await timeCat(files);
    log(`cat: ${(inputBytes / MB).toFixed(0)} MB in ${catSeconds.toFixed(2)} s`);
    const out = join(root, 'merged');
    const child = await new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, [fileURLToPath(import.meta.url), '--merge-child', out, ...inputs], { stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      p.on('error', reject);
      p.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`merge child exited ${code}`))));
    });
    const m = JSON.parse(child.trim().split('\n').pop()!) as { seconds: number; peakRssMB: number; samples: number[]; kept: number; duplicates: number; written: number; defects: number };
    if (m.defects > 0) throw new Error(`the merge reported ${m.defects} defects on generated shards`);
    const result: MergeBenchResult = {
      inputBytes, inputFiles: files.length, records,
      catSeconds, catMBps: inputBytes / MB / catSeconds,
      mergeSeconds: m.seconds, mergeMBps: inputBytes / MB / m.seconds, ratio: catSeconds / m.seconds,
      mergePeakRssMB: m.peakRssMB, rssSamplesMB: m.samples, recordsKept: m.kept, duplicates: m.duplicates, outputBytes: m.written,
    };
    log(`merge: ${result.mergeMBps.toFixed(0)} MB/s (cat ${result.catMBps.toFixed(0)} MB/s, ratio ${(result.ratio * 100).toFixed(0)}%), peak RSS ${m.peakRssMB} MB, RSS samples ${m.samples.join(' ')}`);
    return result;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--merge-child') {
    await mergeChild(process.argv.slice(4), process.argv[3]!);
  } else {
    const r = await runMergeBench();
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  }
}
