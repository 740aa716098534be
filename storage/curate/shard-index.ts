import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../../config/errors.js';
import { writeCdxj } from './cdxj.js';
import { MergedDb } from './merge-db.js';
import { recordRow } from './merge-output.js';
import { importShardDb } from './merge-shard-db.js';
import { syncPostSearch } from './post-search.js';
import { readWarc } from '../warc/warc-reader.js';
import { shardDbPath, warcsDir } from '../shard/layout.js';

/**
 * Indexes a crawl shard in place for `export` (issue 10 §3: `export` of a shard works as its help
 * says): reads every WARC of `SHARD/warcs/` once (checking each record's digests), writes a
 * merged-style database (`dbPath`: records at their offsets in the shard's own files, plus the
 * shard's captures, IDs and posts) and a sorted CDXJ (`cdxjPath`). Nothing is copied or written
 * into the shard. Refused (exit 2) while a WARC is unfinished (`.open`: a crawl is running or was
 * killed) and when a record is damaged — `lifeboat merge` keeps the good records of such a shard.
 */
export async function indexShard(shardDir: string, dbPath: string, cdxjPath: string): Promise<{ warcs: string[] }> {
  const warcDir = warcsDir(shardDir);
  const names = (await readdir(warcDir)).sort();
  const open = names.find((n) => n.endsWith('.open'));
  if (open) throw new InputError(`${join(warcDir, open)} is unfinished (a crawl is running or was interrupted): let the crawl finish or run it again to resume, then export`, { code: 'E_EXPORT_INPUT' });
  const warcs = names.filter((n) => /\.warc(\.gz)?$/.test(n));
  const mdb = new MergedDb(dbPath);
  try {
    const inputId = mdb.addInput({ path: shardDir, kind: 'shard', digest: '' });
    for (const name of warcs) {
      const path = join(warcDir, name);
      const rows: Parameters<MergedDb['putRecord']>[0][] = [];
      for await (const item of readWarc(path)) {
        const problem = item.kind === 'defect' ? item.what : item.problems[0] ?? (item.exact ? undefined : 'record shares its gzip member with others');
        if (problem !== undefined || item.kind === 'defect') {
          throw new InputError(`${path} @${item.offset}: ${problem}; run lifeboat merge ${shardDir} --out DIR (it keeps the good records) and export DIR`, { code: 'E_EXPORT_DAMAGED' });
        }
        if (!item.recordId) continue;
        rows.push({ ...recordRow(item, inputId), warc: name, offset: item.offset, length: item.length });
        if (rows.length >= 4096) mdb.transaction(() => rows.splice(0).forEach((r) => mdb.putRecord(r)));
      }
      mdb.transaction(() => rows.splice(0).forEach((r) => mdb.putRecord(r)));
    }
    importShardDb(mdb, shardDbPath(shardDir), inputId);
    syncPostSearch(mdb.db, warcDir);
    await writeCdxj(mdb.db, cdxjPath);
  } finally {
    mdb.close();
  }
  return { warcs };
}
