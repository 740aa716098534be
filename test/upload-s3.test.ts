import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { execFileSync, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { InputError } from '../config/errors.js';
import { MissingCredentialsError, UploadError } from '../storage/upload/errors.js';
import { MIB } from '../storage/upload/file-digests.js';
import { listUploads } from '../storage/upload/ledger.js';
import { presignPutUrls, uploadWithPresignedUrl, verifyObject } from '../storage/upload/presigned.js';
import { UploadIncompleteError } from '../storage/upload/result.js';
import { createS3Client } from '../storage/upload/s3-client.js';
import { uploadDirectory, type UploadDirectoryOptions } from '../storage/upload/s3.js';

interface S3rverInstance {
  configureBuckets(): Promise<void>;
  callback(): http.RequestListener;
}
const S3rver = createRequire(import.meta.url)('s3rver') as new (options: Record<string, unknown>) => S3rverInstance;

const BUCKET = 'lifeboat-test';
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const root = mkdtempSync(join(tmpdir(), 'lifeboat-upload-s3-'));

/** Every request that reached the store through the proxy, and a switch to damage part bodies. */
const log: Array<{ method: string; url: string }> = [];
/** Requests whose response the store finished sending (a part that landed). */
const landed: Array<{ method: string; url: string; status: number }> = [];
let corruptParts = false;
/** A store that keeps damaged bytes: single PUTs get a byte flipped after Content-MD5 is dropped, and an ETag that is no MD5. */
let damageStoredPuts = false;
/** A store that keeps its own sha256: HEAD answers carry this `x-amz-checksum-sha256` (base64). */
let headChecksum: string | undefined;
let s3Server: http.Server;
let proxy: http.Server;
let endpoint: string;
let closedEndpoint: string;

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  const s3rver = new S3rver({ silent: true, directory: join(root, 's3rver'), configureBuckets: [{ name: BUCKET, configs: [] }] });
  await s3rver.configureBuckets();
  s3Server = http.createServer(s3rver.callback());
  const s3Port = await listen(s3Server);
  // A forwarding proxy: records each request, and can flip a byte of UploadPart bodies.
  proxy = http.createServer((req, res) => {
    log.push({ method: req.method ?? '', url: req.url ?? '' });
    const damageStored = damageStoredPuts && req.method === 'PUT' && !/partNumber=/.test(req.url ?? '');
    const headers = { ...req.headers };
    if (damageStored) delete headers['content-md5'];
    const upstream = http.request({ host: '127.0.0.1', port: s3Port, method: req.method, path: req.url, headers }, (up) => {
      const outHeaders = { ...up.headers };
      if (damageStored && outHeaders['etag']) outHeaders['etag'] = '"5d41402abc4b2a76b9719d911017c592-1"';
      if (headChecksum !== undefined && req.method === 'HEAD') outHeaders['x-amz-checksum-sha256'] = headChecksum;
      res.writeHead(up.statusCode ?? 502, outHeaders);
      up.on('end', () => landed.push({ method: req.method ?? '', url: req.url ?? '', status: up.statusCode ?? 0 }));
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    let first = true;
    const damage = (corruptParts && /partNumber=/.test(req.url ?? '')) || damageStored;
    req
      .pipe(
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            if (damage && first) {
              chunk = Buffer.from(chunk);
              chunk[0] = chunk[0]! ^ 0xff;
              first = false;
            }
            cb(null, chunk);
          },
        }),
      )
      .pipe(upstream);
  });
  endpoint = `http://127.0.0.1:${await listen(proxy)}`;
  const closed = http.createServer();
  const closedPort = await listen(closed);
  closed.close();
  closedEndpoint = `http://127.0.0.1:${closedPort}`;
});

afterAll(async () => {
  proxy?.close();
  s3Server?.close();
  rmSync(root, { recursive: true, force: true });
});

beforeEach(() => {
  log.length = 0;
  corruptParts = false;
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A fake shard: random WARC bytes and a shard.json listing them. */
function makeShard(name: string, warcs: Record<string, number>): { dir: string; bytes: Record<string, Buffer> } {
  const dir = join(root, name);
  mkdirSync(join(dir, 'warcs'), { recursive: true });
  const bytes: Record<string, Buffer> = {};
  for (const [file, size] of Object.entries(warcs)) {
    bytes[file] = randomBytes(size);
    writeFileSync(join(dir, 'warcs', file), bytes[file]!);
  }
  writeFileSync(join(dir, 'warcs', 'demo-20240101000000-00009-n1.warc.gz.open'), 'in progress');
  const manifest = {
    profile: 'demo',
    ranges: ['1-1000'],
    counts: { archived: 10 },
    software: 'lifeboat 0.1.0',
    warcs: Object.entries(bytes).map(([n, b]) => ({ name: n, size: b.length, sha256: sha256(b) })),
  };
  writeFileSync(join(dir, 'shard.json'), JSON.stringify(manifest));
  return { dir, bytes };
}

function client(): S3Client {
  return createS3Client({ endpoint, credentials });
}

async function getObject(key: string): Promise<Buffer> {
  const s3 = client();
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } finally {
    s3.destroy();
  }
}

function opts(dir: string, prefix: string, extra: Partial<UploadDirectoryOptions> = {}): UploadDirectoryOptions {
  return { dir, target: `s3://${BUCKET}/${prefix}`, endpoint, credentials, partSizeBytes: 5 * MIB, concurrency: 2, ...extra };
}

const partPuts = (): string[] => log.filter((r) => r.method === 'PUT' && r.url.includes('partNumber=')).map((r) => /partNumber=(\d+)/.exec(r.url)![1]!);

describe('uploadDirectory to s3rver', () => {
  it('uploads WARCs (12 MB multipart in 5 MiB parts) and shard.json, verifies, records them, and skips them on a re-run', async () => {
    const big = 'demo-20240101000000-00001-n1.warc.gz';
    const small = 'demo-20240101000000-00002-n1.warc.gz';
    const { dir, bytes } = makeShard('basic', { [big]: 12_000_000, [small]: 300_000 });
    const progress: number[] = [];
    const result = await uploadDirectory(opts(dir, 'shards/basic', { onProgress: (p) => progress.push(p.bytesDone) }));

    expect(result.files.map((f) => [f.file, f.outcome])).toEqual([
      [`warcs/${big}`, 'uploaded'],
      [`warcs/${small}`, 'uploaded'],
      ['shard.json', 'uploaded'],
    ]);
    expect(result.files[0]!.partsSent).toBe(3);
    // Files go up side by side (concurrency 2): each counts what it sent, the run their sum.
    const sizes = [12_000_000, 300_000, readFileSync(join(dir, 'shard.json')).length];
    expect(result.files.map((f) => f.bytesSent)).toEqual(sizes);
    expect(result.bytesSent).toBe(sizes[0]! + sizes[1]! + sizes[2]!);
    expect(partPuts().sort()).toEqual(['1', '2', '3']);
    expect(sha256(await getObject(`shards/basic/warcs/${big}`))).toBe(sha256(bytes[big]!));
    expect(sha256(await getObject(`shards/basic/warcs/${small}`))).toBe(sha256(bytes[small]!));
    expect(log.some((r) => r.url.includes('.open'))).toBe(false);
    expect(progress.at(-1)).toBe(12_000_000 + 300_000 + readFileSync(join(dir, 'shard.json')).length);

    const ledger = listUploads(dir);
    expect(ledger.map((r) => [r.file, r.state])).toEqual([
      ['shard.json', 'verified'],
      [`warcs/${big}`, 'verified'],
      [`warcs/${small}`, 'verified'],
    ]);
    expect(ledger.find((r) => r.file === `warcs/${big}`)!.sha256).toBe(sha256(bytes[big]!));

    log.length = 0;
    const again = await uploadDirectory(opts(dir, 'shards/basic'));
    expect(again.files.every((f) => f.outcome === 'skipped')).toBe(true);
    expect(log.filter((r) => r.method === 'PUT' || r.method === 'POST')).toEqual([]);
  });

  it('skips files already on the store when the local ledger is gone (size + sha256 + ETag)', async () => {
    const { dir } = makeShard('present', { 'a.warc.gz': 6 * MIB + 5 });
    await uploadDirectory(opts(dir, 'shards/present'));
    rmSync(join(dir, 'shard.sqlite'));
    log.length = 0;
    const again = await uploadDirectory(opts(dir, 'shards/present'));
    expect(again.files.map((f) => f.outcome)).toEqual(['skipped', 'skipped']);
    expect(log.filter((r) => r.method === 'PUT' || r.method === 'POST')).toEqual([]);
  });

  it('resumes a multipart upload killed after part 1 without re-sending it', async () => {
    const name = 'demo-20240101000000-00003-n1.warc.gz';
    const { dir, bytes } = makeShard('resume', { [name]: 12_000_000 });
    const crash = new Error('simulated kill after part 1');
    const first = uploadDirectory(
      opts(dir, 'shards/resume', {
        partConcurrency: 1,
        afterPart: (_f, n) => {
          if (n === 1) throw crash;
        },
      }),
    );
    const err = (await first.catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err).toBeInstanceOf(UploadIncompleteError);
    const row = listUploads(dir).find((r) => r.file === `warcs/${name}`)!;
    expect(row.state).toBe('uploading');
    expect(row.uploadId).toBeTruthy();
    expect(row.parts.map((p) => p.n)).toEqual([1]);
    expect(partPuts()).toEqual(['1']);

    log.length = 0;
    const result = await uploadDirectory(opts(dir, 'shards/resume'));
    const file = result.files.find((f) => f.file === `warcs/${name}`)!;
    expect(file).toMatchObject({ outcome: 'uploaded', partsReused: 1, partsSent: 2, bytesSent: 12_000_000 - 5 * MIB });
    expect(partPuts().sort()).toEqual(['2', '3']);
    expect(log.some((r) => r.method === 'POST' && r.url.includes('uploads'))).toBe(false); // same UploadId, no new one
    expect(sha256(await getObject(`shards/resume/warcs/${name}`))).toBe(sha256(bytes[name]!));
    expect(listUploads(dir).find((r) => r.file === `warcs/${name}`)!.state).toBe('verified');
  });

  it('detects bytes damaged on the way (ETag ≠ MD5), marks nothing uploaded and deletes nothing', async () => {
    const { dir } = makeShard('corrupt', { 'c.warc.gz': 11 * MIB });
    corruptParts = true;
    const err = (await uploadDirectory(opts(dir, 'shards/corrupt', { deleteAfterUpload: true, maxAttempts: 2 })).catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err).toBeInstanceOf(UploadIncompleteError);
    const failed = err.result.files.find((f) => f.file === 'warcs/c.warc.gz')!;
    expect(failed.outcome).toBe('failed');
    expect(failed.error?.code).toBe('E_UPLOAD_CHECKSUM');
    expect(existsSync(join(dir, 'warcs', 'c.warc.gz'))).toBe(true);
    expect(listUploads(dir).find((r) => r.file === 'warcs/c.warc.gz')?.state).not.toBe('verified');
  });

  it('notices an object replaced on the store (same size and metadata, other bytes) and uploads again', async () => {
    const { dir, bytes } = makeShard('tamper', { 't.warc.gz': 200_000 });
    await uploadDirectory(opts(dir, 'shards/tamper'));
    const s3 = client();
    await s3.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: 'shards/tamper/warcs/t.warc.gz', Body: randomBytes(200_000), Metadata: { sha256: sha256(bytes['t.warc.gz']!) } }),
    );
    s3.destroy();
    const again = await uploadDirectory(opts(dir, 'shards/tamper'));
    expect(again.files.find((f) => f.file === 'warcs/t.warc.gz')!.outcome).toBe('uploaded');
    expect(sha256(await getObject('shards/tamper/warcs/t.warc.gz'))).toBe(sha256(bytes['t.warc.gz']!));
  });

  it('fails a file that changes during upload and does not mark it uploaded', async () => {
    const { dir } = makeShard('changing', { 'g.warc.gz': 12_000_000 });
    const path = join(dir, 'warcs', 'g.warc.gz');
    const err = (await uploadDirectory(
      opts(dir, 'shards/changing', { partConcurrency: 1, afterPart: (_f, n) => (n === 1 ? appendFileSync(path, 'more bytes') : undefined) }),
    ).catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err).toBeInstanceOf(UploadIncompleteError);
    expect(err.result.files.find((f) => f.file === 'warcs/g.warc.gz')!.error?.code).toBe('E_UPLOAD_FILE_CHANGED');
    expect(listUploads(dir).find((r) => r.file === 'warcs/g.warc.gz')!.state).not.toBe('verified');
  });

  it('deletes local WARCs only after verification, when asked, and keeps shard.json; uploads a snapshot of shard.sqlite', async () => {
    const { dir } = makeShard('delete', { 'd.warc.gz': 100_000 });
    const result = await uploadDirectory(opts(dir, 'shards/delete', { deleteAfterUpload: true, includeDatabase: true }));
    expect(result.files.map((f) => [f.file, f.outcome, f.deleted])).toEqual([
      ['warcs/d.warc.gz', 'uploaded', true],
      ['shard.json', 'uploaded', false],
      ['shard.sqlite', 'uploaded', false],
    ]);
    expect(existsSync(join(dir, 'warcs', 'd.warc.gz'))).toBe(false);
    expect(existsSync(join(dir, 'shard.json'))).toBe(true);
    expect((await getObject('shards/delete/shard.sqlite')).subarray(0, 15).toString()).toBe('SQLite format 3');
  });

  it('refuses a WARC whose sha256 differs from shard.json', async () => {
    const { dir } = makeShard('manifest', { 'm.warc.gz': 1000 });
    writeFileSync(join(dir, 'warcs', 'm.warc.gz'), randomBytes(1000));
    log.length = 0;
    const err = (await uploadDirectory(opts(dir, 'shards/manifest')).catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err.result.files[0]!.error?.code).toBe('E_UPLOAD_MANIFEST_MISMATCH');
    expect(err.result.files[0]!.error?.message).toMatch(/m\.warc\.gz: sha256 [0-9a-f]{64} differs from [0-9a-f]{64} in shard\.json/);
    // Nothing of it was sent, nor counted uploaded (issue 21 §5).
    expect(log.filter((r) => r.method === 'PUT' && r.url.includes('m.warc.gz'))).toEqual([]);
    expect(listUploads(dir).filter((r) => r.file === 'warcs/m.warc.gz' && r.state === 'verified')).toEqual([]);
  });
});

describe('bad input gives a clear error and marks nothing uploaded', () => {
  it('never sends a file shard.json does not list: a warcs/passwd.warc.gz link to /etc/passwd, a FIFO, a stray WARC', async () => {
    const { dir } = makeShard('hostile', { 'h.warc.gz': 1000 });
    const cases: [string, () => void, RegExp][] = [
      ['passwd.warc.gz', () => symlinkSync('/etc/passwd', join(dir, 'warcs', 'passwd.warc.gz')), /passwd\.warc\.gz: a symbolic link to \/etc\/passwd, outside the shard; not read; nothing uploaded/],
      ['pipe.warc.gz', () => execFileSync('mkfifo', [join(dir, 'warcs', 'pipe.warc.gz')]), /pipe\.warc\.gz: a FIFO \(named pipe\), not a regular file/],
      ['stray.warc.gz', () => writeFileSync(join(dir, 'warcs', 'stray.warc.gz'), randomBytes(100)), /stray\.warc\.gz: not listed in shard\.json, so not uploaded/],
    ];
    for (const [name, plant, message] of cases) {
      plant();
      log.length = 0;
      const err = await uploadDirectory(opts(dir, 'shards/hostile')).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(message);
      expect(log.filter((r) => r.method === 'PUT' || r.method === 'POST')).toEqual([]);
      rmSync(join(dir, 'warcs', name));
    }
    // A link to a regular file inside the shard is followed; with the stray files gone the upload goes through.
    renameSync(join(dir, 'warcs', 'h.warc.gz'), join(dir, 'h.data'));
    symlinkSync(join('..', 'h.data'), join(dir, 'warcs', 'h.warc.gz'));
    const result = await uploadDirectory(opts(dir, 'shards/hostile'));
    expect(result.files.map((f) => [f.file, f.outcome])).toEqual([['warcs/h.warc.gz', 'uploaded'], ['shard.json', 'uploaded']]);
    expect(log.some((r) => /passwd|pipe|stray/.test(r.url))).toBe(false);
  });

  it('unknown scheme', async () => {
    const { dir } = makeShard('scheme', { 'x.warc.gz': 10 });
    const err = await uploadDirectory({ dir, target: 'ftp://host/x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ code: 'E_UPLOAD_SCHEME' });
    expect((err as Error).message).toMatch(/unknown scheme "ftp:\/\/"/);
  });

  it('missing credentials (standard chain finds none)', async () => {
    const { dir } = makeShard('nocreds', { 'x.warc.gz': 10 });
    const saved = { ...process.env };
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    Object.assign(process.env, {
      AWS_SHARED_CREDENTIALS_FILE: join(root, 'none', 'credentials'),
      AWS_CONFIG_FILE: join(root, 'none', 'config'),
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    try {
      const err = await uploadDirectory({ dir, target: `s3://${BUCKET}/x`, endpoint }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MissingCredentialsError);
      expect(err).toMatchObject({ code: 'E_UPLOAD_CREDENTIALS' });
      expect((err as Error).message).toMatch(/AWS_ACCESS_KEY_ID/);
    } finally {
      process.env = saved;
    }
    expect(listUploads(dir).filter((r) => r.state === 'verified')).toEqual([]);
  });

  it('unreachable endpoint (closed port on 127.0.0.1)', async () => {
    const { dir } = makeShard('unreachable', { 'x.warc.gz': 10 });
    const err = await uploadDirectory({ dir, target: `s3://${BUCKET}/x`, endpoint: closedEndpoint, credentials }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UploadError);
    expect(err).toMatchObject({ code: 'E_UPLOAD_UNREACHABLE' });
    expect((err as Error).message).toContain(closedEndpoint);
    expect(listUploads(dir)).toEqual([]);
  });

  it('part size below 5 MiB', async () => {
    const { dir } = makeShard('partsize', { 'x.warc.gz': 10 });
    await expect(uploadDirectory(opts(dir, 'x', { partSizeBytes: MIB }))).rejects.toMatchObject({ code: 'E_UPLOAD_PART_SIZE' });
  });
});

describe('pre-signed uploads through the tracker', () => {
  it('tracker presigns, node uploads with the URL only, tracker verifies size and sha256', async () => {
    const { dir, bytes } = makeShard('presigned', { 'p.warc.gz': 7 * MIB });
    const data = bytes['p.warc.gz']!;
    const tracker = client();
    const [put] = await presignPutUrls({
      s3Client: tracker,
      bucket: BUCKET,
      prefix: 'nodes/n1',
      files: [{ name: 'warcs/p.warc.gz', size: data.length, sha256: sha256(data) }],
      expiresSecs: 600,
    });
    expect(put!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/lifeboat-test\/nodes\/n1\/warcs\/p\.warc\.gz\?/);
    expect(put!.url).not.toContain('S3RVER&'); // no secret in the URL, only the access key id in the credential scope

    const res = await uploadWithPresignedUrl({ url: put!.url, headers: put!.headers, file: join(dir, 'warcs', 'p.warc.gz'), sha256: sha256(data) });
    expect(res.bytesSent).toBe(data.length);
    expect(res.etag).toBe(createHash('md5').update(data).digest('hex'));

    expect(await verifyObject({ s3Client: tracker, bucket: BUCKET, key: put!.key, size: data.length, sha256: sha256(data) })).toMatchObject({ ok: true });
    expect(await verifyObject({ s3Client: tracker, bucket: BUCKET, key: put!.key, size: data.length + 1 })).toMatchObject({ ok: false });
    expect(await verifyObject({ s3Client: tracker, bucket: BUCKET, key: 'nodes/n1/missing', size: 1 })).toMatchObject({ ok: false, reason: expect.stringMatching(/not found/) });
    tracker.destroy();
  });

  it('a store that keeps damaged bytes of the right length under another ETag is caught before done: read back, or the store’s own checksum (issue 21 §4)', async () => {
    const { dir, bytes } = makeShard('presigned-damaged', { 'd.warc.gz': 300_000 });
    const data = bytes['d.warc.gz']!;
    const tracker = client();
    const [put] = await presignPutUrls({ s3Client: tracker, bucket: BUCKET, prefix: 'nodes/n2', files: [{ name: 'warcs/d.warc.gz', size: data.length, sha256: sha256(data) }], expiresSecs: 600 });
    expect(put!.headers['x-amz-checksum-sha256']).toBe(createHash('sha256').update(data).digest('base64'));
    damageStoredPuts = true;
    try {
      // The node sees a 200 and an ETag that is no MD5: nothing it can check.
      const res = await uploadWithPresignedUrl({ url: put!.url, headers: put!.headers, file: join(dir, 'warcs', 'd.warc.gz'), sha256: sha256(data) });
      expect(res.etag).toBe('5d41402abc4b2a76b9719d911017c592-1');
    } finally {
      damageStoredPuts = false;
    }
    const stored = await getObject(put!.key);
    expect(stored.length).toBe(data.length);
    expect(stored.equals(data)).toBe(false); // same length, same sha256 metadata, damaged bytes
    // s3rver keeps no checksum of its own: the tracker reads the object back and refuses it.
    log.length = 0;
    const verdict = await verifyObject({ s3Client: tracker, bucket: BUCKET, key: put!.key, size: data.length, sha256: sha256(data) });
    expect(verdict).toMatchObject({ ok: false, reason: expect.stringMatching(/read back 300000 bytes with sha256 [0-9a-f]{64}, 300000 bytes with [0-9a-f]{64} expected/) });
    expect(log.map((r) => r.method)).toEqual(['HEAD', 'GET']);
    // A store that answers with its own sha256 is believed without a read-back, both ways.
    log.length = 0;
    headChecksum = createHash('sha256').update(stored).digest('base64');
    try {
      expect(await verifyObject({ s3Client: tracker, bucket: BUCKET, key: put!.key, size: data.length, sha256: sha256(data) })).toMatchObject({ ok: false, reason: expect.stringMatching(/the store's checksum is sha256/) });
      headChecksum = createHash('sha256').update(data).digest('base64');
      expect(await verifyObject({ s3Client: tracker, bucket: BUCKET, key: put!.key, size: data.length, sha256: sha256(data) })).toMatchObject({ ok: true, checkedBy: 'store-checksum' });
      expect(log.map((r) => r.method)).toEqual(['HEAD', 'HEAD']);
    } finally {
      headChecksum = undefined;
    }
    // The good bytes, read back: accepted.
    await uploadWithPresignedUrl({ url: put!.url, headers: put!.headers, file: join(dir, 'warcs', 'd.warc.gz'), sha256: sha256(data) });
    expect(await verifyObject({ s3Client: tracker, bucket: BUCKET, key: put!.key, size: data.length, sha256: sha256(data) })).toMatchObject({ ok: true, checkedBy: 'read-back' });
    tracker.destroy();
  });

  it('node refuses to upload a file whose sha256 is not the announced one; presign refuses unsafe names', async () => {
    const { dir } = makeShard('presigned-bad', { 'q.warc.gz': 1000 });
    await expect(
      uploadWithPresignedUrl({ url: `${endpoint}/${BUCKET}/q`, file: join(dir, 'warcs', 'q.warc.gz'), sha256: '0'.repeat(64) }),
    ).rejects.toMatchObject({ code: 'E_UPLOAD_FILE_CHANGED' });
    const tracker = client();
    await expect(
      presignPutUrls({ s3Client: tracker, bucket: BUCKET, prefix: 'n', files: [{ name: '../etc/x', size: 1, sha256: '0'.repeat(64) }], expiresSecs: 60 }),
    ).rejects.toMatchObject({ code: 'E_UPLOAD_PRESIGN' });
    tracker.destroy();
    // A default client would sign the CRC32 of an empty body into the URL: refused with a hint.
    const defaults = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
    await expect(
      presignPutUrls({ s3Client: defaults, bucket: BUCKET, prefix: 'n', files: [{ name: 'a', size: 1, sha256: '0'.repeat(64) }], expiresSecs: 60 }),
    ).rejects.toThrow(/WHEN_REQUIRED/);
    defaults.destroy();
  });
});

describe('lifeboat upload killed with -9 in the middle of a multipart upload', () => {
  it('finishes on the next run without sending again any part that had landed', async () => {
    const name = 'demo-20240101000000-00001-n1.warc.gz';
    const { dir, bytes } = makeShard('killed', { [name]: 42_000_000 });
    const cli = resolve('dist/scripts/cli/cli.js');
    expect(existsSync(cli), 'dist/ is built (npm test builds it first)').toBe(true);
    const env = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
    landed.length = 0;
    const child = spawn(process.execPath, [cli, 'upload', dir, '--to', `s3://${BUCKET}/shards/killed`, '--endpoint', endpoint, '--part-size', '5M', '--concurrency', '1'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_code, signal) => done(signal)));
    // Kill once the upload's own record (the ledger in shard.sqlite) says parts have landed. s3rver has
    // no ListParts, so what the ledger holds is what a resumed run can know of; real S3 also answers ListParts.
    const recorded = () => listUploads(dir).find((u) => u.file === `warcs/${name}`)?.parts ?? [];
    for (let i = 0; i < 1200 && recorded().length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const firstRun = recorded().map((p) => String(p.n));
    const uploadId = listUploads(dir).find((u) => u.file === `warcs/${name}`)?.uploadId;
    expect(firstRun.length).toBeGreaterThanOrEqual(2);
    expect(firstRun.every((n) => /^\d+$/.test(n))).toBe(true);
    expect(firstRun.length).toBeLessThan(9); // killed before the end: the file has 9 parts of 5 MiB
    const existing = await getObject('shards/killed/warcs/' + name).catch(() => undefined);
    expect(existing).toBeUndefined();

    log.length = 0;
    const result = await uploadDirectory(opts(dir, 'shards/killed'));
    expect(result.files.find((f) => f.file === `warcs/${name}`)?.outcome).toBe('uploaded');
    const resent = log
      .filter((r) => r.method === 'PUT' && r.url.includes(`uploadId=${uploadId}`))
      .filter((r) => firstRun.includes(/partNumber=(\d+)/.exec(r.url)?.[1] ?? ''));
    expect(log.some((r) => r.url.includes(`uploadId=${uploadId}`)), 'the same multipart upload was resumed').toBe(true);
    expect(resent.map((r) => r.url)).toEqual([]);
    expect((await getObject('shards/killed/warcs/' + name)).equals(bytes[name]!)).toBe(true);
  }, 120_000);
});

// The ledger's fast path (a file verified before, same size and mtime: only a HEAD) must never
// skip a file that changed locally or an object that changed on the store.
describe('re-runs after a verified upload', () => {
  const t = new Date('2024-06-01T00:00:00Z'); // whole seconds: the mtime can be set back exactly
  const rewrite = (path: string, text: string, mtime?: Date): void => {
    writeFileSync(path, text);
    if (mtime) utimesSync(path, mtime, mtime);
  };

  it('a shard.json rewritten since (same size, new mtime; or other size, same mtime) is uploaded again', async () => {
    const { dir } = makeShard('rewritten', { 'w.warc.gz': 1000 });
    const manifest = join(dir, 'shard.json');
    const text = readFileSync(manifest, 'utf8');
    utimesSync(manifest, t, t);
    await uploadDirectory(opts(dir, 'shards/rewritten'));
    const sameSize = text.replace('"archived":10', '"archived":11');
    expect(sameSize.length).toBe(text.length);
    rewrite(manifest, sameSize, new Date(t.getTime() + 5000));
    let r = await uploadDirectory(opts(dir, 'shards/rewritten'));
    expect(r.files.map((f) => [f.file, f.outcome])).toEqual([['warcs/w.warc.gz', 'skipped'], ['shard.json', 'uploaded']]);
    expect((await getObject('shards/rewritten/shard.json')).toString()).toBe(sameSize);
    const longer = sameSize.replace('"archived":11', '"archived":12,"missing":1');
    rewrite(manifest, longer, new Date(t.getTime() + 5000)); // the mtime the ledger holds (a coarse clock)
    r = await uploadDirectory(opts(dir, 'shards/rewritten'));
    expect(r.files.find((f) => f.file === 'shard.json')!.outcome).toBe('uploaded');
    expect((await getObject('shards/rewritten/shard.json')).toString()).toBe(longer);
  });

  it('ETags not compared: an object replaced on the store with another size or without its sha256 is uploaded again', async () => {
    const name = 'r.warc.gz';
    const { dir, bytes } = makeShard('replaced-noetag', { [name]: 100_000 });
    const o = opts(dir, 'shards/replaced-noetag', { verifyEtag: false });
    const key = `shards/replaced-noetag/warcs/${name}`;
    await uploadDirectory(o);
    const put = async (body: Buffer, metadata: Record<string, string>): Promise<void> => {
      const s3 = client();
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, Metadata: metadata }));
      s3.destroy();
    };
    for (const [label, body, metadata] of [
      ['another size, the same sha256 metadata', randomBytes(99_999), { sha256: sha256(bytes[name]!) }],
      ['the same size, no sha256 metadata', randomBytes(100_000), {}],
    ] as const) {
      await put(body, metadata);
      const r = await uploadDirectory(o);
      expect(r.files.find((f) => f.file === `warcs/${name}`)!.outcome, label).toBe('uploaded');
      expect(sha256(await getObject(key)), label).toBe(sha256(bytes[name]!));
    }
  });

  it('sends shard.json as application/json and WARCs as application/octet-stream', async () => {
    const { dir } = makeShard('content-type', { 'c.warc.gz': 1000, 'd.warc.gz': 6 * MIB });
    await uploadDirectory(opts(dir, 'shards/content-type'));
    const s3 = client();
    const type = async (key: string): Promise<string | undefined> => (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).ContentType;
    try {
      expect(await type('shards/content-type/shard.json')).toBe('application/json');
      expect(await type('shards/content-type/warcs/c.warc.gz')).toBe('application/octet-stream');
      expect(await type('shards/content-type/warcs/d.warc.gz')).toBe('application/octet-stream');
    } finally {
      s3.destroy();
    }
  });
});

