import { cdxDigest, cdxMime, cdxTimestamp, isHttpUri, surtOf } from './cdxj.js';
import type { DuplicateRow, KeptRecordRow, MergedDb } from './merge-db.js';
import { relative, sep } from 'node:path';
import type { Spooled } from './input/scan-files.js';
import { inputWarcLabel, markCopiedWarcinfo } from './merge-warcinfo.js';
import { normaliseSha1 } from '../warc/warc-digest.js';
import type { ReadRecord } from '../warc/warc-reader.js';
import type { WarcWriter } from '../warc/warc-writer.js';

/**
 * Decides, record by record, what goes into the merged WARCs, and writes it.
 *
 * Deduplication: one copy per (target URI, payload digest). The first response (or resource)
 * with a given URL and payload is kept; every later record with the same URL and payload — a
 * response from an overlapping shard, or a revisit — is **dropped**, not turned into a revisit.
 * Why drop: overlap between volunteer shards comes from the tracker handing a range out again
 * (an expired lease, a killed and resumed node), not from a deliberate re-observation, so a
 * revisit would add a record per overlapping capture and carry no information a replay tool
 * uses (it resolves the URL to the kept copy either way). Dropping also keeps the merge
 * idempotent and order-independent for the archive's content: merging A then B, B then A, or A
 * twice gives the same set of payloads. The fact of each observation is not lost: it is kept in
 * merged.sqlite (`duplicates`: the dropped record's ID, date and input, and which record was
 * kept; `captures`: every shard capture pointing at the kept copy).
 * A record already merged (same WARC-Record-ID) is skipped. Records that depend on another —
 * a `request` or `metadata` linked by WARC-Concurrent-To — follow it: kept with it, dropped with
 * it (wget writes the request first, so a dependent waits in a small window for its anchor).
 * A different payload for the same URL (a post edited between two crawls) is a different
 * version: kept, and listed in coverage.json.
 *
 * Copying: a record that is its own gzip member is copied byte for byte (no re-compression);
 * others come re-compressed by a RecordSpool. An input's warcinfo is the exception: it gains a
 * `WARC-Lifeboat-Copied-From` header (merge-warcinfo.ts), its block unchanged. Records are
 * written in batches and indexed in merged.sqlite in one transaction per batch, after the bytes
 * are in the file.
 *
 * Index-only (`merge --index-only`, issue 25): the same decisions, but nothing is copied. A kept
 * record is indexed where it is — its input WARC, named by a path relative to the output folder,
 * at its own offset — and a dropped duplicate stays in its file, marked in merged.sqlite
 * (`duplicates` with its `warc`, `offset`, `length`) and left out of the CDXJ, so the index and
 * every report equal a full merge's except for where the bytes are. Warcinfo records are indexed
 * unchanged (there is no copy to mark). A record that is not its own gzip member (a whole-file
 * gzip WARC) cannot be pointed at; it is a defect, as in a full merge without a spool.
 */
export interface OfferSource {
  inputId: number;
  path: string;
  spool?: Spooled;
}

export interface MergeCounts {
  recordsRead: number;
  recordsKept: number;
  duplicates: number;
  alreadyMerged: number;
  bytesWritten: number;
}

type Decision = 'keep' | 'drop';

interface BatchEntry {
  data: Buffer | { path: string; offset: number; length: number };
  row: Omit<KeptRecordRow, 'warc' | 'offset' | 'length'>;
  spool?: Spooled;
  /** Index-only: where the record stays. */
  at?: { warc: string; offset: number; length: number };
}

const ANCHOR_TYPES = new Set(['response', 'resource', 'revisit', 'warcinfo']);
const RECENT_MAX = 20_000;
const PENDING_MAX = 256;
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_RECORDS = 4096;

/** The digest that identifies a record's payload for deduplication: what a revisit points at, else the payload as read. */
export function keyDigest(rec: ReadRecord): string | undefined {
  if (rec.type === 'revisit') return normaliseSha1(rec.payloadDigest) ?? rec.payloadDigest;
  return rec.payloadSha1;
}

/**
 * A kept record's row in merged.sqlite (and its CDXJ fields). The CDXJ digest is the record's
 * declared WARC-Payload-Digest; an HTTP record without one gets the payload's sha1 as read; a
 * foreign record with a non-HTTP URI (wget's `metadata://…` log and manifest) gets none, as
 * pywb and jwarc index it (its block digest is not a payload digest).
 */
export function recordRow(rec: ReadRecord, inputId: number): Omit<KeptRecordRow, 'warc' | 'offset' | 'length'> {
  const indexed = rec.type === 'response' || rec.type === 'revisit' || rec.type === 'resource';
  const header = (name: string): string | undefined => rec.httpHeaders?.find(([k]) => k.toLowerCase() === name)?.[1]?.trim().toLowerCase();
  const httpType = rec.httpHeaders?.find(([k]) => k.toLowerCase() === 'content-type')?.[1];
  const encoding = [header('content-encoding'), header('transfer-encoding')].filter((e) => e && e !== 'identity').join('+') || null;
  return {
    recordId: rec.recordId!,
    type: rec.type,
    url: rec.targetUri ?? null,
    surt: indexed && rec.targetUri ? surtOf(rec.targetUri) : null,
    ts: cdxTimestamp(rec.date),
    date: rec.date ?? null,
    mime: cdxMime(rec.type, httpType, rec.contentType),
    status: rec.httpStatus ?? null,
    payloadDigest: keyDigest(rec) ?? null,
    cdxDigest: cdxDigest(rec.payloadDigest) ?? (isHttpUri(rec.targetUri) ? cdxDigest(rec.payloadSha1) : null),
    encoding: rec.type === 'response' ? encoding : null,
    inputId,
  };
}

export class MergeOutput {
  readonly counts: MergeCounts = { recordsRead: 0, recordsKept: 0, duplicates: 0, alreadyMerged: 0, bytesWritten: 0 };
  #batch: BatchEntry[] = [];
  #batchBytes = 0;
  #batchIds = new Set<string>();
  #batchKeys = new Map<string, string>();
  #dups: DuplicateRow[] = [];
  #dupIds = new Set<string>();
  #recent = new Map<string, Decision>();
  #pending: { rec: ReadRecord; src: OfferSource }[] = [];

  readonly #writer: WarcWriter | undefined;
  readonly #out: string | undefined;

  /** `target`: the writer of the merged WARCs, or (index-only) the output folder the records are referenced from. */
  constructor(
    private readonly mdb: MergedDb,
    target: WarcWriter | { out: string },
    private readonly onDefect: (inputId: number, file: string, offset: number, what: string) => void,
  ) {
    if ('out' in target && typeof target.out === 'string') this.#out = target.out;
    else this.#writer = target as WarcWriter;
  }

  #place(path: string, rec: ReadRecord): { warc: string; offset: number; length: number } {
    return { warc: relative(this.#out!, path).split(sep).join('/'), offset: rec.offset, length: rec.length };
  }

  #remember(id: string, d: Decision): void {
    this.#recent.set(id, d);
    if (this.#recent.size > RECENT_MAX) this.#recent.delete(this.#recent.keys().next().value!);
  }

  #isKnown(id: string): boolean {
    return this.#batchIds.has(id) || this.#dupIds.has(id) || this.mdb.isKnownRecord(id);
  }

  #keyDigest(rec: ReadRecord): string | undefined {
    return keyDigest(rec);
  }

  /** A record that failed its checks: not kept; what depends on it is dropped too. */
  rejected(rec: ReadRecord): void {
    if (rec.recordId) this.#remember(rec.recordId, 'drop');
  }

  async offer(rec: ReadRecord, src: OfferSource): Promise<void> {
    const id = rec.recordId!;
    if (this.#isKnown(id)) {
      this.counts.alreadyMerged++;
      this.#remember(id, 'keep');
      await src.spool?.dispose();
      return;
    }
    if (!ANCHOR_TYPES.has(rec.type)) {
      for (const a of rec.concurrentTo) {
        const d = this.#recent.get(a);
        if (d) return this.#apply(rec, src, d, undefined);
      }
      this.#pending.push({ rec, src });
      if (this.#pending.length > PENDING_MAX) {
        const old = this.#pending.shift()!;
        await this.#apply(old.rec, old.src, 'keep', undefined);
      }
      return;
    }
    let decision: Decision = 'keep';
    let keptAs: string | undefined;
    const digest = this.#keyDigest(rec);
    if (rec.type !== 'warcinfo' && rec.targetUri && digest) {
      const key = `${digest} ${rec.targetUri}`;
      keptAs = this.#batchKeys.get(key) ?? this.mdb.keptByKey(rec.targetUri, digest);
      if (keptAs) decision = 'drop';
      else if (rec.type !== 'revisit') this.#batchKeys.set(key, id);
    }
    await this.#apply(rec, src, decision, keptAs);
    if (this.#pending.length > 0) {
      const mine = this.#pending.filter((p) => p.rec.concurrentTo.includes(id) || rec.concurrentTo.includes(p.rec.recordId!));
      if (mine.length > 0) {
        this.#pending = this.#pending.filter((p) => !mine.includes(p));
        for (const p of mine) await this.#apply(p.rec, p.src, decision, undefined);
      }
    }
  }

  async #apply(rec: ReadRecord, src: OfferSource, decision: Decision, keptAs: string | undefined): Promise<void> {
    const id = rec.recordId!;
    this.#remember(id, decision);
    if (decision === 'drop') {
      this.counts.duplicates++;
      this.#dupIds.add(id);
      const at = this.#out !== undefined && rec.exact ? this.#place(src.path, rec) : { warc: null, offset: null, length: null };
      this.#dups.push({ recordId: id, keptRecordId: keptAs ?? null, type: rec.type, url: rec.targetUri ?? null, payloadDigest: this.#keyDigest(rec) ?? null, date: rec.date ?? null, inputId: src.inputId, ...at });
      await src.spool?.dispose();
      return;
    }
    if (this.#out !== undefined) {
      if (!rec.exact) {
        this.onDefect(src.inputId, src.path, rec.offset, `${rec.type} record ${id} shares its gzip member with other records (a whole-file gzip WARC); it cannot be indexed in place — merge this input without --index-only`);
        return;
      }
      this.#batch.push({ data: Buffer.alloc(0), row: recordRow(rec, src.inputId), at: this.#place(src.path, rec) });
      this.#batchIds.add(id);
      this.counts.recordsKept++;
      if (this.#batch.length >= BATCH_RECORDS) await this.flush();
      return;
    }
    let data: BatchEntry['data'];
    if (src.spool) data = src.spool.data;
    else if (rec.exact) data = rec.member ?? { path: src.path, offset: rec.offset, length: rec.length };
    else {
      this.onDefect(src.inputId, src.path, rec.offset, `${rec.type} record ${id} shares its gzip member with other records; not copied`);
      return;
    }
    if (rec.type === 'warcinfo') data = await markCopiedWarcinfo(data, inputWarcLabel(src.path));
    this.#batch.push({ data, spool: src.spool, row: recordRow(rec, src.inputId) });
    this.#batchIds.add(id);
    this.#batchBytes += Buffer.isBuffer(data) ? data.length : data.length;
    this.counts.recordsKept++;
    if (this.#batchBytes >= BATCH_BYTES || this.#batch.length >= BATCH_RECORDS) await this.flush();
  }

  /** Dependents still waiting for an anchor are kept (their anchor was in no input we read). */
  async settlePending(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    for (const p of pending) await this.#apply(p.rec, p.src, 'keep', undefined);
  }

  /** Writes the batch and indexes it in one transaction. */
  async flush(): Promise<void> {
    const batch = this.#batch;
    const dups = this.#dups;
    this.#batch = [];
    this.#dups = [];
    this.#batchBytes = 0;
    const written = batch.length > 0 && this.#writer ? await this.#writer.writeMembers(batch.map((b) => ({ data: b.data, recordId: b.row.recordId, type: b.row.type }))) : [];
    this.mdb.transaction(() => {
      batch.forEach((b, i) => {
        if (b.at) {
          this.mdb.putRecord({ ...b.row, ...b.at });
          return;
        }
        const w = written[i]!;
        this.counts.bytesWritten += w.length;
        this.mdb.putRecord({ ...b.row, warc: w.file, offset: w.offset, length: w.length });
      });
      for (const d of dups) this.mdb.putDuplicate(d);
    });
    this.#batchIds.clear();
    this.#batchKeys.clear();
    this.#dupIds.clear();
    for (const b of batch) await b.spool?.dispose();
  }
}
