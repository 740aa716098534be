import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, buildConnector } from 'undici';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MissingCredentialsError, UploadError } from '../storage/upload/errors.js';
import { encodeIaHeaderValue, iaMetadataHeaders, readIaCredentials, uploadDirectoryToIa, type IaUploadOptions } from '../storage/upload/ia.js';
import { listUploads } from '../storage/upload/ledger.js';
import { UploadIncompleteError } from '../storage/upload/result.js';
import { startIaServer, type IaServer } from './fixtures/ia-server.js';

const root = mkdtempSync(join(tmpdir(), 'lifeboat-upload-ia-'));
const credentials = { accessKey: 'test-access', secretKey: 'test-secret' };
let ia: IaServer;

beforeEach(async () => {
  ia = await startIaServer({ ...credentials });
});
afterEach(async () => {
  await ia.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function makeShard(name: string, warcs: Record<string, number>): { dir: string; bytes: Record<string, Buffer> } {
  const dir = join(root, name);
  mkdirSync(join(dir, 'warcs'), { recursive: true });
  const bytes: Record<string, Buffer> = {};
  for (const [file, size] of Object.entries(warcs)) {
    bytes[file] = randomBytes(size);
    writeFileSync(join(dir, 'warcs', file), bytes[file]!);
  }
  writeFileSync(join(dir, 'warcs', 'x.warc.gz.open'), 'in progress');
  writeFileSync(
    join(dir, 'shard.json'),
    JSON.stringify({
      profile: 'demo',
      ranges: ['1-1000', '5000-6000'],
      counts: { archived: 900, missing: 100 },
      software: 'lifeboat 0.1.0',
      warcs: Object.entries(bytes).map(([n, b]) => ({ name: n, size: b.length, sha256: sha256(b) })),
    }),
  );
  return { dir, bytes };
}

function opts(dir: string, extra: Partial<IaUploadOptions> = {}): IaUploadOptions {
  return { dir, target: 'ia://lifeboat-demo-shard-1', endpoint: ia.url, credentials, retryBaseMs: 10, verifyWaitMs: 500, ...extra };
}

const puts = (): typeof ia.requests => ia.requests.filter((r) => r.method === 'PUT');

describe('upload to the Internet Archive (IAS3)', () => {
  it('creates the item with the first PUT and its metadata, then uploads the rest; headers and auth as IAS3 expects', async () => {
    const a = 'demo-20240305101500-00001-n1.warc.gz';
    const b = 'demo-20240306101500-00002-n1.warc.gz';
    const { dir, bytes } = makeShard('basic', { [a]: 300_000, [b]: 200_000 });
    const result = await uploadDirectoryToIa(
      opts(dir, { metadata: { collection: 'archiveteam_lifeboat', title: 'Rettungsboot — Ü posts', subject: ['lifeboat', 'demo', 'Bäume'] } }),
    );
    expect(result.files.map((f) => [f.file, f.key, f.outcome])).toEqual([
      [`warcs/${a}`, `lifeboat-demo-shard-1/${a}`, 'uploaded'],
      [`warcs/${b}`, `lifeboat-demo-shard-1/${b}`, 'uploaded'],
      ['shard.json', 'lifeboat-demo-shard-1/shard.json', 'uploaded'],
    ]);

    const [first, ...others] = puts();
    expect(first!.path).toBe(`/lifeboat-demo-shard-1/${a}`);
    expect(first!.headers).toMatchObject({
      authorization: 'LOW test-access:test-secret',
      'x-archive-auto-make-bucket': '1',
      'x-archive-meta-mediatype': 'web',
      'x-archive-meta-collection': 'archiveteam_lifeboat',
      'x-archive-meta-title': 'uri(Rettungsboot%20%E2%80%94%20%C3%9C%20posts)',
      'x-archive-meta-date': '2024-03-05',
      'x-archive-meta01-subject': 'lifeboat',
      'x-archive-meta03-subject': 'uri(B%C3%A4ume)',
      'x-archive-queue-derive': '0',
      'content-md5': md5(bytes[a]!),
    });
    // The other files go up two at a time: find shard.json's PUT by name, not by order.
    const manifestPut = others.find((r) => r.path.endsWith('/shard.json') && r.status === 200)!;
    const total = 300_000 + 200_000 + Number(manifestPut.headers['content-length']);
    expect(first!.headers['x-archive-size-hint']).toBe(String(total));
    expect(String(first!.headers['x-archive-meta-description'])).toMatch(/^uri\(/);
    for (const r of others) {
      expect(r.headers['x-archive-auto-make-bucket']).toBeUndefined();
      expect(r.headers['x-archive-meta-title']).toBeUndefined();
      expect(r.headers['x-archive-size-hint']).toBe(r.headers['content-length']);
      expect(r.headers.authorization).toBe('LOW test-access:test-secret');
    }
    expect(ia.requests.some((r) => r.path.endsWith('.open'))).toBe(false);

    const item = ia.items.get('lifeboat-demo-shard-1')!;
    expect(item.metadata).toMatchObject({
      mediatype: ['web'],
      collection: ['archiveteam_lifeboat'],
      title: ['Rettungsboot — Ü posts'],
      subject: ['lifeboat', 'demo', 'Bäume'],
    });
    expect(item.files.get(a)!.sha256).toBe(sha256(bytes[a]!));
    expect(listUploads(dir).every((r) => r.state === 'verified' && r.target === 'ia://lifeboat-demo-shard-1')).toBe(true);

    ia.requests.length = 0;
    const again = await uploadDirectoryToIa(opts(dir));
    expect(again.files.every((f) => f.outcome === 'skipped')).toBe(true);
    expect(puts()).toEqual([]);
  });

  it('honours 503 SlowDown with exponential backoff and then succeeds', async () => {
    const { dir } = makeShard('slowdown', { 's.warc.gz': 50_000 });
    ia.slowDownNext(3);
    const result = await uploadDirectoryToIa(opts(dir, { retryBaseMs: 40, random: () => 0.999 }));
    expect(result.files.every((f) => f.outcome === 'uploaded')).toBe(true);
    const first = puts().filter((r) => r.path.endsWith('/s.warc.gz'));
    expect(first.map((r) => r.status)).toEqual([503, 503, 503, 200]);
    const gaps = first.slice(1).map((r, i) => r.at - first[i]!.at);
    // Backoff doubles: ≥ ~40, ~80, ~160 ms (jitter pinned near its top by `random`).
    expect(gaps[0]).toBeGreaterThanOrEqual(35);
    expect(gaps[1]).toBeGreaterThanOrEqual(75);
    expect(gaps[2]).toBeGreaterThanOrEqual(150);
  });

  it('sends every byte when the connection is slower than the disk (the body is not read before the client is ready)', async () => {
    // Each connection takes 150 ms to open, as to a far-away archive: a file stream put into
    // flowing mode early would have emitted its bytes into nowhere before the PUT could send them.
    const connect = buildConnector({});
    const slow = new Agent({ connect: (o, cb) => void setTimeout(() => connect(o, cb), 150), pipelining: 0 });
    try {
      const { dir, bytes } = makeShard('slowconnect', { 'c.warc.gz': 300_000, 'd.warc.gz': 20_000 });
      ia.slowDownNext(1);
      const result = await uploadDirectoryToIa(opts(dir, { dispatcher: slow }));
      expect(result.files.every((f) => f.outcome === 'uploaded')).toBe(true);
      const stored = ia.items.get('lifeboat-demo-shard-1')!.files;
      expect(stored.get('c.warc.gz')).toMatchObject({ size: 300_000, md5: md5(bytes['c.warc.gz']!) });
      expect(stored.get('d.warc.gz')).toMatchObject({ size: 20_000, md5: md5(bytes['d.warc.gz']!) });
    } finally {
      await slow.close();
    }
  });

  it('gives up after a bounded number of attempts and marks nothing uploaded', async () => {
    const { dir } = makeShard('giveup', { 'g.warc.gz': 1000 });
    ia.slowDownNext(100);
    const err = (await uploadDirectoryToIa(opts(dir, { maxAttempts: 3 })).catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err).toBeInstanceOf(UploadIncompleteError);
    expect(err.result.files[0]!.error).toMatchObject({ code: 'E_UPLOAD_HTTP', status: 503 });
    expect(puts().filter((r) => r.path.endsWith('/g.warc.gz'))).toHaveLength(3);
    expect(listUploads(dir).filter((r) => r.state === 'verified').map((r) => r.file)).not.toContain('warcs/g.warc.gz');
  });

  it('wrong keys: a clear auth error, the run stops, nothing is marked uploaded or deleted', async () => {
    const { dir } = makeShard('auth', { 'a.warc.gz': 1000 });
    const err = await uploadDirectoryToIa(opts(dir, { credentials: { accessKey: 'x', secretKey: 'y' }, deleteAfterUpload: true })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UploadError);
    expect(err).toMatchObject({ code: 'E_UPLOAD_AUTH' });
    expect((err as Error).message).toMatch(/IA_ACCESS_KEY/);
    expect(existsSync(join(dir, 'warcs', 'a.warc.gz'))).toBe(true);
    expect(listUploads(dir).filter((r) => r.state === 'verified')).toEqual([]);
  });

  it('unreachable endpoint: a clear error before anything is sent', async () => {
    const { dir } = makeShard('unreachable', { 'u.warc.gz': 1000 });
    const closed = http.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    const err = await uploadDirectoryToIa(opts(dir, { endpoint: `http://127.0.0.1:${port}` })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_UPLOAD_UNREACHABLE' });
    expect((err as Error).message).toContain(`cannot reach http://127.0.0.1:${port} (ECONNREFUSED)`);
    expect(listUploads(dir).filter((r) => r.state === 'verified')).toEqual([]);
  });

  it('deletes local WARCs after verified upload only when asked', async () => {
    const { dir } = makeShard('delete', { 'd.warc.gz': 1000 });
    const r = await uploadDirectoryToIa(opts(dir, { deleteAfterUpload: true }));
    expect(r.files.map((f) => [f.file, f.deleted])).toEqual([
      ['warcs/d.warc.gz', true],
      ['shard.json', false],
    ]);
    expect(existsSync(join(dir, 'shard.json'))).toBe(true);
  });

  it('refuses a WARC whose sha256 differs from shard.json: nothing of it sent, nothing marked uploaded (issue 21 §5)', async () => {
    const name = 'demo-20240307101500-00003-n1.warc.gz';
    const { dir } = makeShard('manifest-mismatch', { [name]: 50_000 });
    writeFileSync(join(dir, 'warcs', name), randomBytes(50_000)); // changed since shard.json was written
    const err = (await uploadDirectoryToIa(opts(dir)).catch((e: unknown) => e)) as UploadIncompleteError;
    expect(err).toBeInstanceOf(UploadIncompleteError);
    const failed = err.result.files.find((f) => f.file === `warcs/${name}`)!;
    expect(failed.error?.code).toBe('E_UPLOAD_MANIFEST_MISMATCH');
    expect(failed.error?.message).toMatch(/sha256 [0-9a-f]{64} differs from [0-9a-f]{64} in shard\.json/);
    expect(puts().filter((r) => r.path.endsWith(name))).toEqual([]);
    expect(listUploads(dir).filter((r) => r.file === `warcs/${name}` && r.state === 'verified')).toEqual([]);
  });

  it('rejects an unknown scheme and a malformed identifier', async () => {
    const { dir } = makeShard('scheme', { 'x.warc.gz': 10 });
    await expect(uploadDirectoryToIa(opts(dir, { target: 'gs://bucket/x' }))).rejects.toMatchObject({ code: 'E_UPLOAD_SCHEME' });
    await expect(uploadDirectoryToIa(opts(dir, { target: 'ia://a b' }))).rejects.toMatchObject({ code: 'E_UPLOAD_TARGET' });
  });
});

describe('IA credentials and header encoding', () => {
  it('reads keys from env first, then an ia.ini [s3] section; missing keys are a clear error', () => {
    const ini = join(root, 'ia.ini');
    writeFileSync(ini, '[general]\nscreenname = someone\n\n[s3]\naccess = file-access\nsecret = file-secret\n');
    expect(readIaCredentials({ env: { IA_ACCESS_KEY: 'env-a', IA_SECRET_KEY: 'env-s' }, configFile: ini })).toEqual({ accessKey: 'env-a', secretKey: 'env-s' });
    expect(readIaCredentials({ env: {}, configFile: [join(root, 'absent.ini'), ini] })).toEqual({ accessKey: 'file-access', secretKey: 'file-secret' });
    expect(() => readIaCredentials({ env: { IA_ACCESS_KEY: 'only-one' }, configFile: join(root, 'absent.ini') })).toThrow(MissingCredentialsError);
    expect(() => readIaCredentials({ env: {} })).toThrow(/IA_ACCESS_KEY and IA_SECRET_KEY/);
  });

  it('encodes non-ASCII and whitespace as uri(...), repeats lists as metaNN', () => {
    expect(encodeIaHeaderValue('plain-ascii')).toBe('plain-ascii');
    expect(encodeIaHeaderValue('two words')).toBe('uri(two%20words)');
    expect(encodeIaHeaderValue('日本')).toBe('uri(%E6%97%A5%E6%9C%AC)');
    expect(iaMetadataHeaders({ collection: ['a', 'b'], custom_field: 'x' })).toEqual({
      'x-archive-meta-mediatype': 'web',
      'x-archive-meta01-collection': 'a',
      'x-archive-meta02-collection': 'b',
      'x-archive-meta-custom--field': 'x',
    });
  });
});

// archive.org's read side (TESTING.md "Mutation testing"): HEAD and GET are redirected to the
// item's server, a file may answer 404 for a while after its PUT, and an ETag may be no MD5.
describe('verification as the archive answers reads', () => {
  async function withServer(o: Partial<Parameters<typeof startIaServer>[0]>, fn: (server: IaServer) => Promise<void>): Promise<void> {
    const server = await startIaServer({ ...credentials, ...o });
    try {
      await fn(server);
    } finally {
      await server.close();
    }
  }
  const on = (server: IaServer, dir: string, extra: Partial<IaUploadOptions> = {}): IaUploadOptions => ({ ...opts(dir), endpoint: server.url, ...extra });
  const stateOf = (dir: string, file: string): string | undefined => listUploads(dir).find((r) => r.file === file)?.state;

  it('follows the redirect to the item server: verifies after upload, skips on a re-run, and sends each file with its content type', async () => {
    await withServer({ redirectReads: true }, async (server) => {
      const { dir } = makeShard('redirect', { 'r.warc.gz': 40_000 });
      const first = await uploadDirectoryToIa(on(server, dir));
      expect(first.files.map((f) => [f.file, f.outcome])).toEqual([['warcs/r.warc.gz', 'uploaded'], ['shard.json', 'uploaded']]);
      expect(server.requests.filter((r) => r.method === 'HEAD' && r.path.startsWith('/item-server/') && r.status === 200).length).toBeGreaterThanOrEqual(2);
      const putOf = (f: string) => server.requests.find((r) => r.method === 'PUT' && r.path.endsWith(`/${f}`))!;
      expect(putOf('r.warc.gz').headers['content-type']).toBe('application/octet-stream');
      expect(putOf('shard.json').headers['content-type']).toBe('application/json');
      expect(putOf('r.warc.gz').headers['x-archive-size-hint']).toBeDefined();
      const again = await uploadDirectoryToIa(on(server, dir));
      expect(again.files.map((f) => f.outcome)).toEqual(['skipped', 'skipped']);
    });
  });

  it('no MD5 ETag behind a redirect: reads the file back through it; a copy that differs is uploaded again, never skipped', async () => {
    await withServer({ redirectReads: true, noMd5Etag: true }, async (server) => {
      const name = 'demo-20240305101500-00001-n1.warc.gz';
      const { dir, bytes } = makeShard('redirect-readback', { [name]: 30_000 });
      const first = await uploadDirectoryToIa(on(server, dir));
      expect(first.files.map((f) => f.outcome)).toEqual(['uploaded', 'uploaded']);
      expect(server.requests.some((r) => r.method === 'GET' && r.path === `/item-server/lifeboat-demo-shard-1/${name}` && r.status === 200)).toBe(true);
      expect((await uploadDirectoryToIa(on(server, dir))).files.map((f) => f.outcome), 'read back equal: skipped').toEqual(['skipped', 'skipped']);
      // The archive's copy goes bad (same size): the next run must notice by reading it back.
      const stored = server.items.get('lifeboat-demo-shard-1')!.files.get(name)!;
      stored.bytes = Buffer.from(stored.bytes);
      stored.bytes[0]! ^= 0xff;
      const third = await uploadDirectoryToIa(on(server, dir));
      expect(third.files.map((f) => f.outcome)).toEqual(['uploaded', 'skipped']);
      expect(sha256(server.items.get('lifeboat-demo-shard-1')!.files.get(name)!.bytes)).toBe(sha256(bytes[name]!));
    });
  });

  it('an ETag that is no MD5 ("<hex>-1") is not compared as one: the file is read back instead', async () => {
    await withServer({ etag: 'multipart' }, async (server) => {
      const { dir } = makeShard('etag-multipart', { 'm.warc.gz': 20_000 });
      const first = await uploadDirectoryToIa(on(server, dir));
      expect(first.files.map((f) => f.outcome)).toEqual(['uploaded', 'uploaded']);
      expect(server.requests.filter((r) => r.method === 'GET').length).toBeGreaterThanOrEqual(2);
      expect((await uploadDirectoryToIa(on(server, dir))).files.map((f) => f.outcome)).toEqual(['skipped', 'skipped']);
    });
  });

  it('a file the archive answers 404 for a while after its PUT is verified once it appears', async () => {
    await withServer({}, async (server) => {
      const { dir } = makeShard('late-head', { 'l.warc.gz': 10_000 });
      server.notFoundAfterPut(2);
      const r = await uploadDirectoryToIa(on(server, dir, { verifyWaitMs: 30_000 }));
      expect(r.files.map((f) => f.outcome)).toEqual(['uploaded', 'uploaded']);
      const heads = server.requests.filter((x) => x.method === 'HEAD' && x.path.endsWith('/l.warc.gz')).map((x) => x.status);
      expect(heads).toEqual([404, 404, 404, 200]); // the check before the PUT, two while the archive catches up, then found
      expect(stateOf(dir, 'warcs/l.warc.gz')).toBe('verified');
    });
  });

  it('a file that never appears after its PUT is not marked uploaded once the wait is over', async () => {
    await withServer({}, async (server) => {
      const { dir } = makeShard('never-head', { 'v.warc.gz': 10_000 });
      server.notFoundAfterPut(1_000);
      const err = (await uploadDirectoryToIa(on(server, dir, { verifyWaitMs: 300 })).catch((e: unknown) => e)) as UploadIncompleteError;
      expect(err).toBeInstanceOf(UploadIncompleteError);
      const failed = err.result.files.find((f) => f.file === 'warcs/v.warc.gz')!;
      expect(failed.error).toMatchObject({ code: 'E_UPLOAD_SIZE_MISMATCH', status: 404 });
      expect(failed.error!.message).toBe('warcs/v.warc.gz: uploaded, but HEAD still answers 404; not marked uploaded — run upload again later to verify');
      expect(server.requests.filter((x) => x.method === 'HEAD' && x.path.endsWith('/v.warc.gz')).length).toBeGreaterThanOrEqual(3);
      expect(stateOf(dir, 'warcs/v.warc.gz')).not.toBe('verified');
    });
  });

  it('reads that redirect for ever: nothing is skipped or marked uploaded', async () => {
    await withServer({ redirectReads: 'loop' }, async (server) => {
      const { dir } = makeShard('redirect-loop', { 'o.warc.gz': 10_000 });
      const err = (await uploadDirectoryToIa(on(server, dir, { verifyWaitMs: 200 })).catch((e: unknown) => e)) as UploadIncompleteError;
      expect(err).toBeInstanceOf(UploadIncompleteError);
      const failed = err.result.files.find((f) => f.file === 'warcs/o.warc.gz')!;
      expect(failed.error?.message).toMatch(/HEAD still answers 310/);
      // Each look follows at most four hops.
      const heads = server.requests.filter((x) => x.method === 'HEAD');
      expect(heads.length % 4).toBe(0);
      expect(stateOf(dir, 'warcs/o.warc.gz')).not.toBe('verified');
    });
  });
  it.each([
    { getFault: 'redirect-loop', code: 'E_UPLOAD_CHECKSUM', why: 'warcs/g.warc.gz: reading it back from the archive redirected too often; not marked uploaded' },
    { getFault: 503, code: 'E_UPLOAD_CHECKSUM', why: 'warcs/g.warc.gz: reading it back from the archive answered HTTP 503; not marked uploaded — run upload again later to verify' },
    { getFault: 'reset', code: 'E_UPLOAD_UNREACHABLE', why: /^ia:\/\/lifeboat-demo-shard-1: cannot reach http:\/\/127\.0\.0\.1:\d+ \(\w+\) to read warcs\/g\.warc\.gz back$/ },
  ] as const)('no MD5 ETag and the file cannot be read back ($getFault): not marked uploaded, and never skipped on a re-run', async ({ getFault, code, why }) => {
    await withServer({ noMd5Etag: true, getFault }, async (server) => {
      const { dir } = makeShard(`readback-${getFault}`, { 'g.warc.gz': 10_000 });
      for (let run = 0; run < 2; run++) {
        const err = (await uploadDirectoryToIa(on(server, dir)).catch((e: unknown) => e)) as UploadIncompleteError;
        expect(err).toBeInstanceOf(UploadIncompleteError);
        const failed = err.result.files.find((f) => f.file === 'warcs/g.warc.gz')!;
        expect(failed.outcome).toBe('failed');
        expect(failed.error).toMatchObject({ code });
        if (typeof why === 'string') expect(failed.error!.message).toBe(why);
        else expect(failed.error!.message).toMatch(why);
        expect(stateOf(dir, 'warcs/g.warc.gz')).not.toBe('verified');
      }
      // The second run PUT it again: a copy that cannot be read back is not taken as there.
      expect(server.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/g.warc.gz'))).toHaveLength(2);
      if (getFault === 'redirect-loop') expect(server.requests.filter((r) => r.method === 'GET').length % 4).toBe(0);
    });
  });

  it('asks for derivative formats only when told to', async () => {
    await withServer({}, async (server) => {
      const { dir } = makeShard('derive', { 'q.warc.gz': 1000 });
      await uploadDirectoryToIa(on(server, dir, { queueDerive: true }));
      expect(server.requests.filter((r) => r.method === 'PUT').map((r) => r.headers['x-archive-queue-derive'])).toEqual(['1', '1']);
    });
  });
});
