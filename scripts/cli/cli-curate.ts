import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../../config/errors.js';
import { codecSpecFromName, createCodec } from '../../config/id-codec.js';
import { SOFTWARE } from '../../config/version.js';
import { ShardDbReader } from '../../storage/shard/shard-db-read.js';
import type { UploadProgress } from '../../storage/upload/progress.js';
import type { CliIo } from './cli-io.js';
import { byteSize, positiveInt } from './cli-options.js';
import { shardDbPath } from '../../storage/shard/layout.js';
import { assertHttpUrl } from '../../config/errors.js';

/** The codec a shard was crawled with (its shard.sqlite meta), so reports use the platform's notation. */
function shardCodec(dir: string): ((id: number) => string) | undefined {
  const path = shardDbPath(dir);
  if (!existsSync(path)) return undefined;
  let reader: ShardDbReader;
  try {
    reader = ShardDbReader.open(path);
  } catch {
    return undefined;
  }
  try {
    const name = reader.codecName();
    const spec = name === undefined ? undefined : codecSpecFromName(name);
    if (spec === undefined || spec === 'integer') return undefined;
    const codec = createCodec(spec);
    return (id) => codec.encode(id);
  } catch {
    return undefined;
  } finally {
    reader.close();
  }
}

function uploadProgress(io: CliIo): (p: UploadProgress) => void {
  return (p) => {
    const line = `${p.filesDone}/${p.filesTotal} files  ${(p.bytesDone / 1e6).toFixed(1)}/${(p.bytesTotal / 1e6).toFixed(1)} MB  ${p.mbPerSec.toFixed(1)} MB/s  ETA ${p.etaSecs === undefined ? '?' : `${Math.round(p.etaSecs)}s`}`;
    io.stderr.write(io.stderr.isTTY ? `\r\x1b[2K${line}` : `${line}\n`);
  };
}

/** A progress line on stderr at most once a second, the first after a second (a short run prints none; a TTY rewrites it in place); `done` ends it. */
export function progressLine(io: CliIo, what: string): ((text: string) => void) & { done: () => void } {
  let last = Date.now();
  let shown = false;
  const write = (text: string): void => {
    const now = Date.now();
    if (now - last < 1000) return;
    last = now;
    shown = true;
    io.stderr.write(io.stderr.isTTY ? `\r\x1b[2K${what}: ${text}` : `${what}: ${text}\n`);
  };
  return Object.assign(write, { done: () => void (shown && io.stderr.isTTY && io.stderr.write('\n')) });
}

/** Curator commands: merge, export, status, upload. */
export function registerCurateCommands(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('merge')
    .description('merge shards (and foreign WARCs) into one deduplicated, indexed set with a coverage report')
    .argument('<shards...>', 'shard directories or WARC files')
    .requiredOption('--out <dir>', 'merged directory (merging into an existing one adds to it)')
    .option('--warc-size <bytes>', 'rotate merged WARCs at this size (default 1G)', byteSize)
    .option('--jobs <n>', 'input files read and checked at once, one per core (default: the number of cores)', positiveInt('--jobs'))
    .option('--index-only', 'copy nothing: index the input WARCs where they are (paths relative to --out)')
    .option('--json', 'print the result as JSON')
    .action(async (shards: string[], o: { out: string; warcSize?: number; jobs?: number; indexOnly?: boolean; json?: boolean }) => {
      const given = shards.map((s) => resolve(s));
      for (const i of given) if (!existsSync(i)) throw new InputError(`no such shard or WARC: ${i}`, { code: 'E_MERGE_INPUT' });
      const { expandNodeFolders } = await import('./node-folders.js');
      const inputs = await expandNodeFolders(given, io);
      const formatId = inputs.map(shardCodec).find((f) => f !== undefined);
      const { mergeShards } = await import('../../storage/curate/merge.js');
      if (o.indexOnly && o.warcSize) throw new InputError('--warc-size has no effect with --index-only (no WARCs are written)', { code: 'E_MERGE_OPTIONS' });
      const progress = progressLine(io, 'merge');
      const result = await mergeShards({
        inputs,
        out: resolve(o.out),
        software: SOFTWARE,
        ...(o.warcSize ? { maxWarcBytes: o.warcSize } : {}),
        ...(formatId ? { formatId } : {}),
        ...(o.jobs ? { jobs: o.jobs } : {}),
        indexOnly: !!o.indexOnly,
        onProgress: (p) => progress(`${(p.bytesRead / 1e6).toFixed(0)} MB read, ${p.recordsRead} records, ${p.recordsKept} kept, ${p.duplicates} duplicates, ${p.defects} defects; at ${p.file}`),
        onDefect: (d) => io.stderr.write(`defect: ${d.file}${d.offset !== undefined ? ` @${d.offset}` : ''}: ${d.what}\n`),
      });
      progress.done();
      if (o.json) io.stdout.write(`${JSON.stringify(result)}\n`);
      else {
        for (const i of result.inputs) io.stdout.write(`${i.status}: ${i.path}${i.reason ? ` (${i.reason})` : ''}\n`);
        const c = result.coverage;
        io.stdout.write(`${Object.entries(c.statuses).map(([k, v]) => `${k} ${v}`).join(', ')}; ${c.missing_ids} IDs without a final status in ${c.missing_ranges} ranges (missing-ranges.txt); ${c.conflicts.versions.count} URLs with differing versions, ${c.conflicts.same_content.count} with the same content in another encoding (coverage.json); ${result.cdxjLines} index lines; ${result.defectCount} defects; ${result.seconds.toFixed(1)} s, ${result.jobs} jobs\n`);
        const x = result.indexOnly;
        if (x) {
          io.stdout.write(
            `index-only: ${x.warcsReferenced} input WARCs left in place and referenced from indexes/index.cdxj (nothing copied). ` +
              `${x.trusted} matched their shard.json (size and sha256), so their records' sha1 block and payload digests were not recomputed; ` +
              `${x.recordChecked} had no matching shard.json entry and were checked record by record. ` +
              `The index is only as good as those files stay: run \`lifeboat verify ${o.out}\` to re-check them.\n`,
          );
        }
      }
      setExit(result.defectCount > 0 ? 1 : 0);
    });

  program
    .command('export')
    .description('package a merged directory, or a single crawl shard (indexed in place), as WACZ 1.1.1')
    .argument('<dir>', 'merged directory (lifeboat merge --out DIR) or crawl shard (lifeboat crawl --out DIR)')
    .requiredOption('--wacz <file>', 'the .wacz file to write (its folder must exist)')
    .option('--title <title>', 'the collection title (default: "PROJECT archive")')
    .option('--description <text>', 'the collection description (default: what was archived, when, from how many inputs)')
    .option('--main-page <url>', 'the archived page ReplayWeb.page opens first (default: the first post\'s page)')
    .action(async (dir: string, o: { wacz: string; title?: string; description?: string; mainPage?: string }) => {
      const { exportWacz } = await import('../../storage/export/wacz.js');
      const r = await exportWacz({
        dir: resolve(dir),
        file: resolve(o.wacz),
        ...(o.title ? { title: o.title } : {}),
        ...(o.description ? { description: o.description } : {}),
        ...(o.mainPage ? { mainPageUrl: o.mainPage } : {}),
      });
      const warcs = r.resources.filter((f) => f.path.startsWith('archive/')).length;
      io.stdout.write(`${r.file}: ${r.bytes} bytes, ${r.resources.length} files (${warcs} WARCs), ${r.pages} pages; main page ${r.mainPageUrl ?? 'none'}\n`);
      setExit(0);
    });

  program
    .command('search')
    .description("find archived posts by their words, author or date (full-text index of the merged posts' fields)")
    .argument('<dir>', 'merged directory')
    .argument('<query>', 'words (FTS5: "a phrase", prefix*, OR, NOT); "" for filters only')
    .option('--author <name>', 'only posts by this author')
    .option('--since <date>', 'only posts on or after this date (YYYY-MM-DD or ISO date-time)')
    .option('--until <date>', 'only posts on or before this date (a YYYY-MM-DD includes the whole day)')
    .option('--limit <n>', 'at most this many results (default 20)', positiveInt('--limit'))
    .option('--json', 'one JSON object per result')
    .action(async (dir: string, query: string, o: { author?: string; since?: string; until?: string; limit?: number; json?: boolean }) => {
      const { searchPosts } = await import('../../storage/curate/post-search.js');
      const hits = searchPosts(resolve(dir), query, { ...(o.author ? { author: o.author } : {}), ...(o.since ? { since: o.since } : {}), ...(o.until ? { until: o.until } : {}), ...(o.limit ? { limit: o.limit } : {}) });
      for (const h of hits) {
        if (o.json) io.stdout.write(`${JSON.stringify(h)}\n`);
        else io.stdout.write(`${h.id}  ${(h.date ?? '?').slice(0, 19).replace('T', ' ')}  ${h.author ?? '?'}  ${h.snippet.replace(/\s+/g, ' ')}  ${h.url ?? ''}\n`);
      }
      if (!o.json) io.stderr.write(`${hits.length} post${hits.length === 1 ? '' : 's'} found\n`);
      setExit(0);
    });

  program
    .command('status')
    .description('counts by status, WARC files and sizes, provenance, uploads and what is left to do')
    .argument('<dir>', 'shard or merged directory')
    .option('--json', 'JSON output')
    .action(async (dir: string, o: { json?: boolean }) => {
      const [{ formatNodeStatus, formatStatus, nodeStatus, shardStatus }, { listUploads }, { nodeItemDirs }] = await Promise.all([
        import('../../storage/curate/status.js'),
        import('../../storage/upload/ledger.js'),
        import('../../storage/shard/shard-dir.js'),
      ]);
      const items = await nodeItemDirs(resolve(dir));
      if (items !== undefined) {
        // A node's folder: all its items, one line each, and their sums.
        const n = await nodeStatus(resolve(dir), items);
        io.stdout.write(o.json ? `${JSON.stringify({ ...n, items: n.items.map((i) => ({ ...i, uploads: listUploads(i.dir) })) })}\n` : formatNodeStatus(n));
        setExit(0);
        return;
      }
      const s = await shardStatus(resolve(dir));
      const uploads = listUploads(resolve(dir));
      if (o.json) io.stdout.write(`${JSON.stringify({ ...s, uploads })}\n`);
      else {
        io.stdout.write(`${formatStatus(s)}\n`);
        if (uploads.length > 0) {
          io.stdout.write('uploads:\n');
          for (const u of uploads) io.stdout.write(`  ${u.state.padEnd(9)} ${u.file} -> ${u.target} (${u.key})\n`);
        }
      }
      setExit(0);
    });

  program
    .command('upload')
    .description('upload a shard to an S3-compatible store or the Internet Archive; verified and resumable')
    .argument('<dir>', 'shard directory')
    .requiredOption('--to <target>', 's3://BUCKET/PREFIX or ia://IDENTIFIER')
    .option('--endpoint <url>', 'S3-compatible endpoint (or the IA S3 endpoint)')
    .option('--concurrency <n>', 'files at once', positiveInt('--concurrency'))
    .option('--part-size <bytes>', 'multipart part size (S3; at least 5M)', byteSize)
    .option('--delete-after-upload', 'delete each WARC once its upload is verified')
    .option('--include-db', 'also upload a snapshot of shard.sqlite (S3)')
    .option('--collection <name>', 'IA collection')
    .option('--title <title>', 'IA item title')
    .action(async (dir: string, o: { to: string; endpoint?: string; concurrency?: number; partSize?: number; deleteAfterUpload?: boolean; includeDb?: boolean; collection?: string; title?: string }) => {
      if (o.endpoint !== undefined) assertHttpUrl('--endpoint', o.endpoint);
      const { parseUploadTarget } = await import('../../storage/upload/target.js');
      const target = parseUploadTarget(o.to);
      const common = {
        dir: resolve(dir),
        target: o.to,
        ...(o.endpoint ? { endpoint: o.endpoint } : {}),
        ...(o.concurrency ? { concurrency: o.concurrency } : {}),
        deleteAfterUpload: !!o.deleteAfterUpload,
        onProgress: uploadProgress(io),
      };
      const { uploadDirectory } = await import('../../storage/upload/s3.js');
      const { defaultIaConfigFiles, readIaCredentials, uploadDirectoryToIa } = await import('../../storage/upload/ia.js');
      const { nodeItemDirs } = await import('../../storage/shard/shard-dir.js');
      // A node's folder: each item shard goes up under PREFIX/items/ITEM, as it lies on disk.
      const items = await nodeItemDirs(resolve(dir));
      if (items !== undefined && items.length === 0) throw new InputError(`${dir} is a volunteer node's folder with no item shards yet: run the node first`, { code: 'E_NODE_EMPTY' });
      if (items !== undefined && target.scheme === 'ia') {
        throw new InputError(`${dir} is a node's folder of ${items.length} item shards; an archive.org item takes one shard: upload each with lifeboat upload ${dir}/items/ITEM --to ia://IDENTIFIER-ITEM, or use s3://`, { code: 'E_USAGE' });
      }
      const jobs = items === undefined ? [{ dir: resolve(dir), to: o.to }] : items.map((d) => ({ dir: d, to: `${o.to.replace(/\/+$/, '')}/items/${basename(d)}` }));
      if (items !== undefined) io.stderr.write(`${dir}: a node's folder; uploading its ${items.length} item shards to ${o.to.replace(/\/+$/, '')}/items/ITEM\n`);
      for (const job of jobs) {
        const each = { ...common, dir: job.dir, target: job.to };
        const result =
          target.scheme === 's3'
            ? await uploadDirectory({ ...each, ...(o.partSize ? { partSizeBytes: o.partSize } : {}), includeDatabase: !!o.includeDb })
            : await uploadDirectoryToIa({
                ...each,
                credentials: readIaCredentials({ env: io.env, configFile: defaultIaConfigFiles(io.env, homedir()) }),
                ...(o.collection || o.title ? { metadata: { ...(o.collection ? { collection: o.collection } : {}), ...(o.title ? { title: o.title } : {}) } } : {}),
              });
        if (io.stderr.isTTY) io.stderr.write('\n');
        const where = items === undefined ? '' : `items/${basename(job.dir)}/`;
        for (const f of result.files) io.stdout.write(`${f.outcome.padEnd(8)} ${where}${f.file}${f.error ? `: ${f.error}` : ''}\n`);
        io.stdout.write(`${result.files.length} files, ${(result.bytesSent / 1e6).toFixed(1)} MB sent at ${result.mbPerSec.toFixed(1)} MB/s to ${result.target}\n`);
      }
      setExit(0);
    });
}
