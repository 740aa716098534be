import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { InputError } from '../../config/errors.js';
import { indexShard } from '../curate/shard-index.js';
import { readManifest } from '../shard/shard-manifest.js';
import { flatWarcNames, readReferencedWarcs, rewriteCdxjFilenames } from '../shard/referenced-warcs.js';
import { MergedDb, MergedDbReader } from '../curate/merge-db.js';
import { pageLines } from './wacz-pages.js';
import { ZipWriter } from './zip-writer.js';
import { mergedDbPath, shardDbPath, warcsDir } from '../shard/layout.js';

/**
 * `lifeboat export DIR --wacz FILE`: packages a merged directory — or a crawl shard, indexed in
 * place (shard-index.ts) — as WACZ 1.1.1 (https://specs.webrecorder.net/wacz/1.1.1/), which
 * ReplayWeb.page opens. Every entry is stored with its CRC and sizes in its local header
 * (zip-writer.ts), so streaming zip readers open it too:
 *   archive/*.warc.gz          stored, not deflated (already gzip; and replay reads ranges of them)
 *   indexes/index.cdxj         the merged CDXJ; above `compressIndexAboveBytes` instead
 *                              indexes/index.cdx.gz (gzip blocks of CDXJ lines) + indexes/index.idx
 *   pages/pages.jsonl          one entry per archived post: its HTML page when one was captured, with
 *                              the post's title and extracted text (wacz-pages.ts)
 *   datapackage.json           every file's path, size and sha256; title, description, mainPageUrl
 *                              and mainPageDate (given, or defaults from the merge)
 *   datapackage-digest.json    the sha256 of datapackage.json
 * Everything streams: each file is hashed as it goes into the zip, and pages.jsonl is built in
 * a temp file from merged.sqlite.
 */
export interface ExportWaczOptions {
  /** A merged directory (lifeboat merge --out DIR) or a crawl shard. */
  dir: string;
  /** The .wacz file to write. */
  file: string;
  /** Default: "PROJECT archive". */
  title?: string;
  /** Default: what was archived, when, and from how many inputs. */
  description?: string;
  /** The page ReplayWeb.page opens first; must be archived. Default: the first page of pages.jsonl. */
  mainPageUrl?: string;
  software?: string;
  /** Above this size the CDXJ is shipped as index.cdx.gz + index.idx (default 10 MiB). */
  compressIndexAboveBytes?: number;
  /** CDXJ lines per gzip block of index.cdx.gz (default 3000). */
  linesPerBlock?: number;
}

export interface WaczResult {
  file: string;
  bytes: number;
  /** What the directory was: a merge output, or a shard indexed for the export. */
  source: 'merged' | 'shard';
  title: string;
  description: string;
  mainPageUrl: string | null;
  mainPageDate: string | null;
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

interface Described {
  title: string;
  description: string;
  mainPageUrl: string | null;
  mainPageDate: string | null;
}

/** datapackage.json's title, description, mainPageUrl and mainPageDate: as given, or what the merge says. */
function describe(db: MergedDbReader, o: ExportWaczOptions, source: WaczResult['source'], firstPage: { url: string; ts: string } | undefined): Described {
  const project = db.meta('prefix') ?? 'lifeboat';
  const ids = db.idCounts();
  const count = (status: string): number => ids[status] ?? 0;
  const span = db.captureSpan();
  const inputs = db.inputCount();
  const day = (d: string | null): string => (d ?? '?').slice(0, 10);
  const archived = count('archived');
  const what =
    archived > 0
      ? `${archived} posts archived (${count('missing')} missing, ${count('gone')} gone, ${count('restricted')} restricted)`
      : `${db.responseCount()} responses archived`;
  const from = source === 'shard' ? 'from one crawl shard' : `merged from ${inputs} input${inputs === 1 ? '' : 's'}`;
  let mainPageUrl = firstPage?.url ?? null;
  let mainPageDate = firstPage?.ts ?? null;
  if (o.mainPageUrl) {
    const date = db.firstGoodCaptureDate(o.mainPageUrl);
    if (!date) throw new InputError(`--main-page ${o.mainPageUrl} is not archived in ${o.dir} (give a URL from its index)`, { code: 'E_EXPORT_MAIN_PAGE' });
    mainPageUrl = o.mainPageUrl;
    mainPageDate = date;
  }
  return {
    title: o.title ?? `${project} archive`,
    description: o.description ?? `${project}: ${what}, captured ${day(span.first)} to ${day(span.last)} by lifeboat, ${from}.`,
    mainPageUrl,
    mainPageDate,
  };
}

/** Which kind of directory `dir` is; for a shard, builds its index in `work`. */
async function openSource(dir: string, work: string): Promise<{ source: WaczResult['source']; dbPath: string; cdxjPath: string; warcDir: string }> {
  const merged = { dbPath: mergedDbPath(dir), cdxjPath: join(dir, 'indexes', 'index.cdxj') };
  if (existsSync(merged.dbPath) && existsSync(merged.cdxjPath)) return { source: 'merged', ...merged, warcDir: warcsDir(dir) };
  if (existsSync(shardDbPath(dir)) && existsSync(warcsDir(dir))) {
    const dbPath = join(work, 'shard-index.sqlite');
    const cdxjPath = join(work, 'index.cdxj');
    await indexShard(dir, dbPath, cdxjPath);
    const profile = (await readManifest(dir))?.profile;
    if (profile) {
      const mdb = new MergedDb(dbPath);
      mdb.setMeta('prefix', profile);
      mdb.close();
    }
    return { source: 'shard', dbPath, cdxjPath, warcDir: warcsDir(dir) };
  }
  throw new InputError(`${dir} is neither a merged directory (merged.sqlite, indexes/index.cdxj) nor a crawl shard (shard.sqlite, warcs/)`, { code: 'E_EXPORT_INPUT' });
}

export async function exportWacz(o: ExportWaczOptions): Promise<WaczResult> {
  const folder = dirname(o.file);
  if (!existsSync(folder)) throw new InputError(`cannot write ${o.file}: the folder ${folder} does not exist`, { code: 'E_EXPORT_OUTPUT' });
  if (existsSync(o.file) && (await stat(o.file)).isDirectory()) throw new InputError(`cannot write ${o.file}: it is a directory (give a file name such as ${join(o.file, 'archive.wacz')})`, { code: 'E_EXPORT_OUTPUT' });
  if (!existsSync(o.dir)) throw new InputError(`${o.dir} does not exist`, { code: 'E_EXPORT_INPUT' });
  const work = await mkdtemp(join(tmpdir(), 'lifeboat-wacz-'));
  const tmpFile = `${o.file}.tmp`;
  let db: MergedDbReader | undefined;
  let zip: ZipWriter | undefined;
  try {
    const src = await openSource(o.dir, work);
    db = MergedDbReader.open(src.dbPath); // leaves no -wal/-shm behind (issue 10 §3)
    const files: { src: string; path: string }[] = [];
    const referenced = src.source === 'merged' ? readReferencedWarcs(o.dir) : undefined;
    if (referenced) {
      // An index-only merge: the WARCs it points into go in under flat names, and the index is rewritten to name them so.
      const flat = flatWarcNames(referenced.map((w) => w.name));
      for (const w of referenced) files.push({ src: resolve(o.dir, w.name), path: `archive/${flat.get(w.name)!}` });
      const rewritten = join(work, 'index.cdxj');
      await rewriteCdxjFilenames(src.cdxjPath, rewritten, flat);
      src.cdxjPath = rewritten;
    } else for (const name of (await readdir(src.warcDir)).filter((n) => n.endsWith('.warc.gz')).sort()) files.push({ src: join(src.warcDir, name), path: `archive/${name}` });
    if ((await stat(src.cdxjPath)).size > (o.compressIndexAboveBytes ?? 10 * 1024 * 1024)) {
      await compressIndex(src.cdxjPath, join(work, 'index.cdx.gz'), join(work, 'index.idx'), o.linesPerBlock ?? 3000);
      files.push({ src: join(work, 'index.cdx.gz'), path: 'indexes/index.cdx.gz' }, { src: join(work, 'index.idx'), path: 'indexes/index.idx' });
    } else files.push({ src: src.cdxjPath, path: 'indexes/index.cdxj' });
    let firstPage: { url: string; ts: string } | undefined;
    const lines = pageLines(db.sqlite, src.warcDir);
    const pages = (await writeLines(join(work, 'pages.jsonl'), (function* () {
      for (const line of lines) {
        if (firstPage === undefined && !line.startsWith('{"format"')) firstPage = JSON.parse(line) as { url: string; ts: string };
        yield line;
      }
    })())) - 1;
    files.push({ src: join(work, 'pages.jsonl'), path: 'pages/pages.jsonl' });
    const meta = describe(db, o, src.source, firstPage);

    const mtime = new Date();
    zip = await ZipWriter.create(tmpFile, mtime);
    const resources: Resource[] = [];
    for (const f of files) {
      const e = await zip.addFile(f.path, f.src);
      resources.push({ name: f.path.split('/').pop()!, path: f.path, hash: `sha256:${e.sha256}`, bytes: e.bytes });
    }
    const now = mtime.toISOString();
    const datapackage = Buffer.from(
      `${JSON.stringify(
        {
          profile: 'data-package',
          wacz_version: '1.1.1',
          title: meta.title,
          description: meta.description,
          ...(meta.mainPageUrl ? { mainPageUrl: meta.mainPageUrl, mainPageDate: meta.mainPageDate } : {}),
          software: o.software ?? 'lifeboat',
          created: now,
          modified: now,
          resources,
        },
        null,
        2,
      )}\n`,
    );
    const digest = Buffer.from(`${JSON.stringify({ path: 'datapackage.json', hash: `sha256:${createHash('sha256').update(datapackage).digest('hex')}` }, null, 2)}\n`);
    await zip.addBuffer('datapackage.json', datapackage);
    await zip.addBuffer('datapackage-digest.json', digest);
    const { bytes } = await zip.close();
    zip = undefined;
    await rename(tmpFile, o.file);
    return { file: o.file, bytes, source: src.source, ...meta, resources, pages };
  } finally {
    await zip?.abort();
    db?.close();
    await rm(work, { recursive: true, force: true });
    await rm(tmpFile, { force: true });
  }
}
