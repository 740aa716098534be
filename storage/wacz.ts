import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import yazl from 'yazl';
import { InputError } from '../config/errors.js';

/**
 * `lifeboat export DIR --wacz FILE`: packages a merged directory as WACZ 1.1.1
 * (https://specs.webrecorder.net/wacz/1.1.1/), which ReplayWeb.page opens:
 *   archive/*.warc.gz          stored, not deflated (already gzip; and replay reads ranges of them)
 *   indexes/index.cdxj         the merged CDXJ; above `compressIndexAboveBytes` instead
 *                              indexes/index.cdx.gz (gzip blocks of CDXJ lines) + indexes/index.idx
 *   pages/pages.jsonl          one entry per archived post: its HTML page when one was captured
 *   datapackage.json           every file's path, size and sha256
 *   datapackage-digest.json    the sha256 of datapackage.json
 * Everything streams: each file is hashed as it goes into the zip, and pages.jsonl is built in
 * a temp file from merged.sqlite.
 */
export interface ExportWaczOptions {
  /** A merged directory (lifeboat merge --out DIR). */
  dir: string;
  /** The .wacz file to write. */
  file: string;
  title?: string;
  software?: string;
  /** Above this size the CDXJ is shipped as index.cdx.gz + index.idx (default 10 MiB). */
  compressIndexAboveBytes?: number;
  /** CDXJ lines per gzip block of index.cdx.gz (default 3000). */
  linesPerBlock?: number;
}

export interface WaczResult {
  file: string;
  bytes: number;
  resources: { name: string; path: string; hash: string; bytes: number }[];
  pages: number;
}

type Resource = WaczResult['resources'][number];

async function writeLines(path: string, lines: Iterable<string>): Promise<number> {
  const out = createWriteStream(path);
  let n = 0;
  for (const line of lines) {
    n++;
    if (!out.write(`${line}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return n;
}

function* pageLines(db: Database.Database): Generator<string> {
  yield JSON.stringify({ format: 'json-pages-1.0', id: 'pages', title: 'All Pages' });
  let n = 0;
  const rows = db
    .prepare<[], { post_id: number; url: string; fetched_at: string; fields: string | null }>(
      `SELECT post_id, url, fetched_at, (SELECT fields FROM posts p WHERE p.id = x.post_id LIMIT 1) AS fields FROM (
         SELECT c.post_id, c.url, c.fetched_at,
                ROW_NUMBER() OVER (PARTITION BY c.post_id ORDER BY (c.content_type LIKE 'text/html%') DESC, c.rowid) AS rn
         FROM captures c JOIN ids i ON i.id = c.post_id
         WHERE i.status = 'archived' AND c.http_status BETWEEN 200 AND 299) x
       WHERE rn = 1 ORDER BY post_id`,
    )
    .iterate();
  for (const r of rows) {
    n++;
    let title: string | undefined;
    try {
      const f = r.fields ? (JSON.parse(r.fields) as Record<string, unknown>) : {};
      if (typeof f.title === 'string') title = f.title;
    } catch {
      // fields are informational
    }
    yield JSON.stringify({ id: `post-${r.post_id}`, url: r.url, ts: r.fetched_at, ...(title ? { title } : {}) });
  }
  if (n > 0) return;
  // No shard captures (bare WARCs only): every HTML page is a page.
  for (const r of db
    .prepare<[], { url: string; date: string }>(`SELECT url, date FROM records WHERE type = 'response' AND status = 200 AND mime = 'text/html' ORDER BY surt, ts`)
    .iterate()) {
    yield JSON.stringify({ url: r.url, ts: r.date });
  }
}

/** Splits the CDXJ into gzip blocks; writes index.cdx.gz and the index.idx that points at each block. */
async function compressIndex(cdxj: string, gzPath: string, idxPath: string, linesPerBlock: number): Promise<void> {
  const gz = createWriteStream(gzPath);
  const idx = createWriteStream(idxPath);
  idx.write(`!meta 0 ${JSON.stringify({ format: 'cdxj-gzip-1.0', filename: 'index.cdx.gz' })}\n`);
  let block: string[] = [];
  let offset = 0;
  const flush = async (): Promise<void> => {
    if (block.length === 0) return;
    const data = gzipSync(Buffer.from(block.join('')));
    const first = block[0]!;
    const key = first.slice(0, first.indexOf(' ', first.indexOf(' ') + 1));
    idx.write(`${key} ${JSON.stringify({ offset, length: data.length, digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, filename: 'index.cdx.gz' })}\n`);
    offset += data.length;
    block = [];
    if (!gz.write(data)) await once(gz, 'drain');
  };
  const { createInterface } = await import('node:readline');
  for await (const line of createInterface({ input: createReadStream(cdxj), crlfDelay: Infinity })) {
    if (!line) continue;
    block.push(`${line}\n`);
    if (block.length >= linesPerBlock) await flush();
  }
  await flush();
  gz.end();
  idx.end();
  await Promise.all([once(gz, 'finish'), once(idx, 'finish')]);
}

export async function exportWacz(o: ExportWaczOptions): Promise<WaczResult> {
  const dbPath = join(o.dir, 'merged.sqlite');
  const cdxjPath = join(o.dir, 'indexes', 'index.cdxj');
  try {
    await stat(dbPath);
    await stat(cdxjPath);
  } catch {
    throw new InputError(`${o.dir} is not a merged directory (no merged.sqlite or indexes/index.cdxj): run lifeboat merge first`, { code: 'E_EXPORT_INPUT' });
  }
  const work = await mkdtemp(join(tmpdir(), 'lifeboat-wacz-'));
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  const tmpFile = `${o.file}.tmp`;
  try {
    const files: { src: string; path: string }[] = [];
    for (const name of (await readdir(join(o.dir, 'warcs'))).filter((n) => n.endsWith('.warc.gz')).sort()) files.push({ src: join(o.dir, 'warcs', name), path: `archive/${name}` });
    if ((await stat(cdxjPath)).size > (o.compressIndexAboveBytes ?? 10 * 1024 * 1024)) {
      await compressIndex(cdxjPath, join(work, 'index.cdx.gz'), join(work, 'index.idx'), o.linesPerBlock ?? 3000);
      files.push({ src: join(work, 'index.cdx.gz'), path: 'indexes/index.cdx.gz' }, { src: join(work, 'index.idx'), path: 'indexes/index.idx' });
    } else files.push({ src: cdxjPath, path: 'indexes/index.cdxj' });
    const pages = (await writeLines(join(work, 'pages.jsonl'), pageLines(db))) - 1;
    files.push({ src: join(work, 'pages.jsonl'), path: 'pages/pages.jsonl' });

    const zip = new yazl.ZipFile();
    const out = createWriteStream(tmpFile);
    const written = once(out, 'finish');
    zip.outputStream.pipe(out);
    const resources: Resource[] = [];
    const hashed: Promise<void>[] = [];
    const mtime = new Date();
    for (const f of files) {
      const size = (await stat(f.src)).size;
      const h = createHash('sha256');
      const pass = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          h.update(chunk);
          cb(null, chunk);
        },
      });
      const resource: Resource = { name: f.path.split('/').pop()!, path: f.path, hash: '', bytes: size };
      resources.push(resource);
      hashed.push(once(pass, 'end').then(() => void (resource.hash = `sha256:${h.digest('hex')}`)));
      // Lazily opened: thousands of WARCs do not hold thousands of descriptors.
      zip.addReadStreamLazy(f.path, { compress: false, size, mtime }, (cb) => cb(null, createReadStream(f.src).pipe(pass)));
    }
    await Promise.all(hashed);
    const now = new Date().toISOString();
    const datapackage = Buffer.from(
      `${JSON.stringify(
        { profile: 'data-package', wacz_version: '1.1.1', title: o.title ?? 'lifeboat archive', software: o.software ?? 'lifeboat', created: now, modified: now, resources },
        null,
        2,
      )}\n`,
    );
    const digest = Buffer.from(`${JSON.stringify({ path: 'datapackage.json', hash: `sha256:${createHash('sha256').update(datapackage).digest('hex')}` }, null, 2)}\n`);
    zip.addBuffer(datapackage, 'datapackage.json', { compress: true, mtime });
    zip.addBuffer(digest, 'datapackage-digest.json', { compress: true, mtime });
    zip.end();
    await written;
    await rename(tmpFile, o.file);
    return { file: o.file, bytes: (await stat(o.file)).size, resources, pages };
  } finally {
    db.close();
    await rm(work, { recursive: true, force: true });
    await rm(tmpFile, { force: true });
  }
}
