/**
 * Upload benchmark: `uploadDirectory` (hash pass + resumable multipart + HEAD verification)
 * beside one plain HTTP PUT of the same bytes (undici → a pre-signed URL, no SDK), both to
 * s3rver on 127.0.0.1; and the peak RSS of this process while `uploadDirectory` sends a 2 GiB
 * file. s3rver runs in a child process so its memory is not counted.
 *
 *   npm run build && node dist/scripts/bench/bench-upload.js [--mib 512] [--big-gib 2]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { request } from 'undici';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { MIB } from '../../storage/upload/file-digests.js';
import { createS3Client } from '../../storage/upload/s3-client.js';
import { uploadDirectory } from '../../storage/upload/s3.js';
import { warcPath, warcsDir } from '../../storage/shard/layout.js';

export interface UploadBenchOptions {
  /** Size of the throughput file. Default 512 MiB. */
  throughputBytes?: number;
  /** Size of the memory-test file. Default 2 GiB. */
  bigFileBytes?: number;
  partSizeBytes?: number;
  partConcurrency?: number;
}

export interface UploadBenchRow {
  case: string;
  bytes: number;
  seconds: number;
  mbPerSec: number;
  /** Peak RSS of this process during the case, and its growth over the RSS before it. */
  peakRssMiB: number;
  rssGrowthMiB: number;
}

const BUCKET = 'bench';
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

async function startS3rverChild(directory: string): Promise<{ endpoint: string; child: ChildProcess }> {
  const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
  const code = `
    const S3rver = require(${JSON.stringify(s3rverPath)});
    const http = require('node:http');
    const s = new S3rver({ silent: true, directory: process.argv[1], configureBuckets: [{ name: '${BUCKET}', configs: [] }] });
    s.configureBuckets().then(() => {
      const srv = http.createServer(s.callback());
      srv.listen(0, '127.0.0.1', () => process.stdout.write(srv.address().port + '\\n'));
    });`;
  const child = spawn(process.execPath, ['-e', code, directory], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => reject(new Error(`s3rver exited with ${c}`)));
    child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
  });
  return { endpoint: `http://127.0.0.1:${port}`, child };
}

/** Writes `bytes` of pseudo-random data (a random 16 MiB block, each copy stamped with its index). */
function writeRandomFile(path: string, bytes: number): void {
  const block = randomBytes(16 * MIB);
  const fd = openSync(path, 'w');
  try {
    for (let off = 0, i = 0; off < bytes; off += block.length, i++) {
      block.writeUInt32BE(i, 0);
      writeSync(fd, block, 0, Math.min(block.length, bytes - off));
    }
  } finally {
    closeSync(fd);
  }
}

/** Samples RSS every 50 ms while `fn` runs. */
async function measure(name: string, bytes: number, fn: () => Promise<unknown>): Promise<UploadBenchRow> {
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  const t0 = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  const seconds = (performance.now() - t0) / 1000;
  peak = Math.max(peak, process.memoryUsage().rss);
  return { case: name, bytes, seconds, mbPerSec: bytes / 1e6 / seconds, peakRssMiB: peak / MIB, rssGrowthMiB: (peak - before) / MIB };
}

function makeShard(root: string, name: string, bytes: number): string {
  const dir = join(root, name);
  mkdirSync(warcsDir(dir), { recursive: true });
  writeRandomFile(warcPath(dir, `bench-20240101000000-00001-${name}.warc.gz`), bytes);
  return dir;
}

export async function runUploadBench(options: UploadBenchOptions = {}): Promise<UploadBenchRow[]> {
  const throughputBytes = options.throughputBytes ?? 512 * MIB;
  const bigFileBytes = options.bigFileBytes ?? 2 * 1024 * MIB;
  const partSizeBytes = options.partSizeBytes ?? 64 * MIB;
  const partConcurrency = options.partConcurrency ?? 4;
  const root = mkdtempSync(join(tmpdir(), 'lifeboat-bench-upload-'));
  const { endpoint, child } = await startS3rverChild(join(root, 's3rver'));
  const rows: UploadBenchRow[] = [];
  try {
    const dir = makeShard(root, 'tp', throughputBytes);
    const warc = warcPath(dir, `bench-20240101000000-00001-tp.warc.gz`);
    rows.push(
      await measure(`uploadDirectory (${partSizeBytes / MIB} MiB parts ×${partConcurrency}, hash + verify)`, throughputBytes, () =>
        uploadDirectory({ dir, target: `s3://${BUCKET}/tp`, endpoint, credentials, partSizeBytes, partConcurrency, concurrency: 1 }),
      ),
    );
    const s3 = createS3Client({ endpoint, credentials });
    const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket: BUCKET, Key: 'plain/put.bin' }), { expiresIn: 3600 });
    s3.destroy();
    rows.push(
      await measure('single plain PUT (undici, pre-signed URL)', throughputBytes, async () => {
        const res = await request(url, {
          method: 'PUT',
          body: createReadStream(warc, { highWaterMark: MIB }),
          headers: { 'content-length': String(throughputBytes) },
        });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`plain PUT: HTTP ${res.statusCode}`);
      }),
    );
    rmSync(dir, { recursive: true, force: true });

    const big = makeShard(root, 'big', bigFileBytes);
    rows.push(
      await measure(`uploadDirectory ${(bigFileBytes / 1024 / MIB).toFixed(1)} GiB file (peak RSS)`, bigFileBytes, () =>
        uploadDirectory({ dir: big, target: `s3://${BUCKET}/big`, endpoint, credentials, partSizeBytes, partConcurrency, concurrency: 1 }),
      ),
    );
  } finally {
    child.kill();
    rmSync(root, { recursive: true, force: true });
  }
  return rows;
}

export function formatUploadBench(rows: readonly UploadBenchRow[]): string {
  const lines = ['| case | MiB | s | MB/s | peak RSS MiB | RSS growth MiB |', '|---|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    lines.push(`| ${r.case} | ${(r.bytes / MIB).toFixed(0)} | ${r.seconds.toFixed(2)} | ${r.mbPerSec.toFixed(1)} | ${r.peakRssMiB.toFixed(0)} | ${r.rssGrowthMiB.toFixed(0)} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string): number | undefined => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const mib = arg('--mib');
  const bigGib = arg('--big-gib');
  const rows = await runUploadBench({
    throughputBytes: mib === undefined ? undefined : mib * MIB,
    bigFileBytes: bigGib === undefined ? undefined : Math.round(bigGib * 1024 * MIB),
  });
  process.stdout.write(`${formatUploadBench(rows)}\n`);
}
