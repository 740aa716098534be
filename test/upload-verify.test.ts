import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIB } from '../storage/upload/file-digests.js';
import { uploadDirectoryToIa } from '../storage/upload/ia.js';
import { listUploads } from '../storage/upload/ledger.js';
import { UploadIncompleteError } from '../storage/upload/result.js';
import { createS3Client } from '../storage/upload/s3-client.js';
import { uploadDirectory } from '../storage/upload/s3.js';
import { startIaServer } from './fixtures/ia-server.js';

// Verification after upload must fail when the store lies: it answered the upload with success
// but holds other bytes or another size. Then the file is not counted as uploaded, the run says
// so (UploadIncompleteError naming the file and why), and the next run uploads it again.

interface S3rverInstance {
  configureBuckets(): Promise<void>;
  callback(): http.RequestListener;
}
const S3rver = createRequire(import.meta.url)('s3rver') as new (options: Record<string, unknown>) => S3rverInstance;

const BUCKET = 'lifeboat-verify';
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const root = mkdtempSync(join(tmpdir(), 'lifeboat-upload-verify-'));
const storeDir = join(root, 's3rver');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let s3Server: http.Server;
let proxy: http.Server;
let endpoint: string;
/**
 * Keys the store will damage on its disk once their upload has landed (a PUT without a part
 * number, or the POST completing a multipart upload), just before the next HEAD — the
 * verification — reads them.
 */
const lies = new Map<string, { how: Lie; landed: boolean }>();
/**
 * `multipart-etag` is no lie: it gives the object the ETag AWS S3 gives a multipart upload (the MD5
 * of its 5 MiB parts' MD5s, `-N`), where s3rver keeps the whole object's MD5. `vanish` removes it.
 */
type Lie = 'size' | 'bytes' | 'sha256' | 'multipart-etag' | 'vanish';

function damageOnDisk(key: string, how: Lie): void {
  const parts = key.split('/');
  const object = join(storeDir, BUCKET, ...parts.slice(0, -1), `${parts.at(-1)}._S3rver_object`);
  if (how === 'multipart-etag') {
    const bytes = readFileSync(object);
    const md5s: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 5 * MIB) md5s.push(createHash('md5').update(bytes.subarray(at, at + 5 * MIB)).digest());
    writeFileSync(`${object}.md5`, `${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${md5s.length}`);
    return;
  }
  if (how === 'vanish') {
    for (const suffix of ['', '.md5']) rmSync(`${object}${suffix}`, { force: true });
    rmSync(join(storeDir, BUCKET, ...parts.slice(0, -1), `${parts.at(-1)}._S3rver_metadata.json`), { force: true });
    return;
  }
  if (how === 'sha256') {
    // Same bytes, but the store reports another sha256 in the object's metadata.
    const meta = join(storeDir, BUCKET, ...parts.slice(0, -1), `${parts.at(-1)}._S3rver_metadata.json`);
    const json = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, string>;
    json['x-amz-meta-sha256'] = '0'.repeat(64);
    writeFileSync(meta, JSON.stringify(json));
    return;
  }
  const bytes = readFileSync(object);
  if (how === 'size') writeFileSync(object, bytes.subarray(0, bytes.length - 1));
  else {
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(object, bytes);
  }
  // s3rver keeps the ETag beside the object; without it, it hashes what it really holds.
  unlinkSync(`${object}.md5`);
}

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  const s3rver = new S3rver({ silent: true, directory: storeDir, configureBuckets: [{ name: BUCKET, configs: [] }] });
  await s3rver.configureBuckets();
  s3Server = http.createServer(s3rver.callback());
  const s3Port = await listen(s3Server);
  proxy = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://store.invalid');
    const key = decodeURIComponent(url.pathname.slice(`/${BUCKET}/`.length));
    const lie = lies.get(key);
    if (lie?.landed && req.method === 'HEAD') {
      lies.delete(key);
      damageOnDisk(key, lie.how);
    }
    const upstream = http.request({ host: '127.0.0.1', port: s3Port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.on('end', () => {
        const completes = (req.method === 'PUT' && !url.searchParams.has('partNumber')) || (req.method === 'POST' && url.searchParams.has('uploadId'));
        if (lie && completes && (up.statusCode ?? 0) < 300) lie.landed = true;
      });
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  endpoint = `http://127.0.0.1:${await listen(proxy)}`;
});

afterAll(async () => {
  proxy?.close();
  s3Server?.close();
  rmSync(root, { recursive: true, force: true });
});

/** A shard directory: random WARC bytes and a shard.json listing them. */
function makeShard(name: string, warcs: Record<string, number>): { dir: string; bytes: Record<string, Buffer> } {
  const dir = join(root, name);
  mkdirSync(join(dir, 'warcs'), { recursive: true });
  const bytes: Record<string, Buffer> = {};
  for (const [file, size] of Object.entries(warcs)) {
    bytes[file] = randomBytes(size);
    writeFileSync(join(dir, 'warcs', file), bytes[file]!);
  }
  const manifest = { profile: 'demo', ranges: ['1-1000'], counts: { archived: 10 }, software: 'lifeboat 0.1.0', warcs: Object.entries(bytes).map(([n, b]) => ({ name: n, size: b.length, sha256: sha256(b) })) };
  writeFileSync(join(dir, 'shard.json'), JSON.stringify(manifest));
  return { dir, bytes };
}

async function getObject(key: string): Promise<Buffer> {
  const s3 = createS3Client({ endpoint, credentials });
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } finally {
    s3.destroy();
  }
}

const stateOf = (dir: string, file: string): string | undefined => listUploads(dir).find((r) => r.file === file)?.state;

describe('S3 upload verification against a store that lies (s3rver)', () => {
  const cases = [
    { label: 'single-part, one byte short', size: 300_000, how: 'size', code: 'E_UPLOAD_SIZE_MISMATCH', why: /size 299999 on the store, 300000 locally/ },
    { label: 'single-part, one byte changed', size: 300_000, how: 'bytes', code: 'E_UPLOAD_CHECKSUM', why: /ETag \w+ on the store matches neither/ },
    { label: 'multipart (3 parts), one byte short', size: 11 * MIB, how: 'size', code: 'E_UPLOAD_SIZE_MISMATCH', why: new RegExp(`size ${11 * MIB - 1} on the store`) },
    { label: 'multipart (3 parts), one byte changed', size: 11 * MIB, how: 'bytes', code: 'E_UPLOAD_CHECKSUM', why: /ETag \w+ on the store matches neither/ },
    { label: 'single-part, another sha256 in its metadata', size: 200_000, how: 'sha256', code: 'E_UPLOAD_CHECKSUM', why: new RegExp(`sha256 metadata ${'0'.repeat(64)} on the store`) },
    // A store whose ETag is no MD5 (verifyEtag: false): read back before it counts (issue 21 §4).
    { label: 'single-part, one byte changed, ETag not compared', size: 250_000, how: 'bytes', code: 'E_UPLOAD_CHECKSUM', why: /read back 250000 bytes with sha256 \w+, 250000 bytes with \w+ locally/, verifyEtag: false },
    { label: 'multipart (3 parts), one byte changed, ETag not compared', size: 11 * MIB + 7, how: 'bytes', code: 'E_UPLOAD_CHECKSUM', why: /read back \d+ bytes with sha256 \w+/, verifyEtag: false },
  ] as const;

  it.each(cases)('$label: not counted as uploaded, the run says so, a re-run repairs it', async (c) => {
    const { label, size, how, code, why } = c;
    const name = `demo-20240101000000-0000${cases.findIndex((c) => c.label === label)}-n1.warc.gz`;
    const prefix = `shards/${how}-${size}`;
    const { dir, bytes } = makeShard(`s3-${how}-${size}`, { [name]: size });
    const options = { dir, target: `s3://${BUCKET}/${prefix}`, endpoint, credentials, partSizeBytes: 5 * MIB, concurrency: 2, deleteAfterUpload: true, ...('verifyEtag' in c ? { verifyEtag: c.verifyEtag } : {}) };
    lies.set(`${prefix}/warcs/${name}`, { how, landed: false });

    const err = (await uploadDirectory(options).catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err).toBeInstanceOf(UploadIncompleteError);
    expect(lies.size).toBe(0); // the lie was told
    const failed = err.result.files.find((f) => f.file === `warcs/${name}`)!;
    expect(failed.outcome).toBe('failed');
    expect(failed.error?.code).toBe(code);
    expect(failed.error?.message).toMatch(why);
    expect(err.message).toContain(`1 of 2 files were not uploaded`);
    expect(err.message).toContain(`warcs/${name}: `);
    expect(err.result.files.find((f) => f.file === 'shard.json')!.outcome).toBe('uploaded');
    expect(stateOf(dir, `warcs/${name}`)).not.toBe('verified');
    expect(existsSync(join(dir, 'warcs', name))).toBe(true); // never deleted unverified

    const again = await uploadDirectory(options);
    expect(again.files.map((f) => [f.file, f.outcome])).toEqual([
      [`warcs/${name}`, 'uploaded'],
      ['shard.json', 'skipped'],
    ]);
    expect(stateOf(dir, `warcs/${name}`)).toBe('verified');
    expect(sha256(await getObject(`${prefix}/warcs/${name}`))).toBe(sha256(bytes[name]!));
    expect(existsSync(join(dir, 'warcs', name))).toBe(false); // deleted once verified
  });
});

describe('S3 upload verification of what a store really answers', () => {
  it('accepts the multipart ETag AWS S3 gives (MD5 of the part MD5s), and skips the file on a re-run', async () => {
    const name = 'demo-20240101000000-00020-n1.warc.gz';
    const { dir, bytes } = makeShard('s3-multipart-etag', { [name]: 11 * MIB });
    const options = { dir, target: `s3://${BUCKET}/shards/multipart-etag`, endpoint, credentials, partSizeBytes: 5 * MIB, concurrency: 2 };
    lies.set(`shards/multipart-etag/warcs/${name}`, { how: 'multipart-etag', landed: false });
    const r = await uploadDirectory(options);
    expect(lies.size).toBe(0);
    expect(r.files.map((f) => [f.file, f.outcome, f.bytesSent])).toEqual([
      [`warcs/${name}`, 'uploaded', 11 * MIB],
      ['shard.json', 'uploaded', readFileSync(join(dir, 'shard.json')).length],
    ]);
    expect(stateOf(dir, `warcs/${name}`)).toBe('verified');
    rmSync(join(dir, 'shard.sqlite')); // no ledger: the store's answer alone must say it is there
    const again = await uploadDirectory(options);
    expect(again.files.map((f) => f.outcome)).toEqual(['skipped', 'skipped']);
    expect(sha256(await getObject(`shards/multipart-etag/warcs/${name}`))).toBe(sha256(bytes[name]!));
  });

  it('an object gone right after its upload is not marked uploaded', async () => {
    const name = 'demo-20240101000000-00021-n1.warc.gz';
    const { dir } = makeShard('s3-vanish', { [name]: 100_000 });
    lies.set(`shards/vanish/warcs/${name}`, { how: 'vanish', landed: false });
    const err = (await uploadDirectory({ dir, target: `s3://${BUCKET}/shards/vanish`, endpoint, credentials }).catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err).toBeInstanceOf(UploadIncompleteError);
    const failed = err.result.files.find((f) => f.file === `warcs/${name}`)!;
    expect(failed.error).toMatchObject({ code: 'E_UPLOAD_CHECKSUM', message: `warcs/${name}: verification failed after upload: object missing after upload; not marked uploaded` });
    expect(stateOf(dir, `warcs/${name}`)).not.toBe('verified');
  });
});

describe('Internet Archive upload verification against a store that lies (IA-shaped fixture)', () => {
  const ia = { accessKey: 'test-access', secretKey: 'test-secret' };
  it.each([
    { how: 'size', code: 'E_UPLOAD_SIZE_MISMATCH', why: /the archive holds 199999 bytes, the local file 200000/ },
    { how: 'bytes', code: 'E_UPLOAD_CHECKSUM', why: /the archive's MD5 \w+ differs from the local/ },
    // No MD5 ETag on HEAD: the file is read back before it counts (issue 21 §4).
    { how: 'bytes', code: 'E_UPLOAD_CHECKSUM', why: /read back from the archive, 200000 bytes with sha256 \w+, the local file 200000 bytes with/, noMd5Etag: true },
  ] as const)('one byte $how (no MD5 ETag: $noMd5Etag): not counted as uploaded, the run says so, a re-run repairs it', async (c) => {
    const { how, code, why } = c;
    const server = await startIaServer({ ...ia, ...('noMd5Etag' in c ? { noMd5Etag: true } : {}) });
    try {
      const name = 'demo-20240305101500-00001-n1.warc.gz';
      const { dir, bytes } = makeShard(`ia-${how}${'noMd5Etag' in c ? '-noetag' : ''}`, { [name]: 200_000 });
      const options = { dir, target: 'ia://lifeboat-verify-1', endpoint: server.url, credentials: ia, retryBaseMs: 10, verifyWaitMs: 500 };
      server.lieAbout(name, how);
      const err = (await uploadDirectoryToIa(options).catch((e: unknown) => e)) as UploadIncompleteError;
      expect(err).toBeInstanceOf(UploadIncompleteError);
      const failed = err.result.files.find((f) => f.file === `warcs/${name}`)!;
      expect(failed.outcome).toBe('failed');
      expect(failed.error?.code).toBe(code);
      expect(failed.error?.message).toMatch(why);
      expect(err.message).toContain(`warcs/${name}: `);
      expect(stateOf(dir, `warcs/${name}`)).not.toBe('verified');

      const again = await uploadDirectoryToIa(options);
      expect(again.files.find((f) => f.file === `warcs/${name}`)!.outcome).toBe('uploaded');
      expect(stateOf(dir, `warcs/${name}`)).toBe('verified');
      const stored = server.items.get('lifeboat-verify-1')!.files.get(name)!;
      expect([stored.size, stored.sha256]).toEqual([200_000, sha256(bytes[name]!)]);
    } finally {
      await server.close();
    }
  });
});
