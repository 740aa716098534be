import { readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../config/errors.js';
import type { Logger } from '../../config/logger.js';
import type { WarcReport } from '../../tracker/client/api-types.js';
import { listUploads } from '../../storage/upload/ledger.js';
import { warcPath } from '../../storage/shard/layout.js';

/**
 * A volunteer's disk and time caps (issue 14): `--max-disk` stops claiming new work when the data
 * folder is at the cap — after first deleting WARCs whose upload was verified, to make room and go
 * on — and stops an item in progress (its remainder goes back to the tracker) when the folder gets
 * there while crawling; `--max-hours` stops claiming after that long. The bandwidth cap lives in
 * the fetch stack (bandwidth-cap.ts); it is only shown here.
 *
 * A WARC counts as verified-uploaded when the tracker accepted `done` for its item with uploads
 * configured (the tracker checks size and sha256 in the bucket first; the node then writes
 * `UPLOADED_MARKER` in the item folder), or when the shard's upload ledger (`lifeboat upload`)
 * has it `verified`. The file's size must still match what was uploaded.
 */

export const UPLOADED_MARKER = 'uploaded.json';

export interface NodeCapsOptions {
  outDir: string;
  maxDiskBytes?: number;
  maxHours?: number;
  /** Shown in the progress line only (the fetch stack enforces it). */
  maxBandwidthBytesPerSec?: number;
  now?: () => number;
  log: Logger;
}

export class NodeCaps {
  readonly #o: NodeCapsOptions;
  readonly #startedAt: number;
  readonly #now: () => number;
  /** Most bytes one item has taken at its peak so far (with a margin): the room a new claim needs. */
  #itemBytes = 0;
  #usedBytes = 0;
  /** The item in progress: the folder's size without it when it started, and its own peak. */
  #item: { dir: string; baseBytes: number; peakBytes: number } | undefined;

  constructor(options: NodeCapsOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
  }

  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** Whether `--max-hours` has passed. */
  timeIsUp(): boolean {
    return this.#o.maxHours !== undefined && this.#now() - this.#startedAt >= this.#o.maxHours * 3_600_000;
  }

  /**
   * Before a claim: why the node should stop claiming, or undefined to go on. Over the disk cap,
   * verified-uploaded WARCs are deleted first; the node stops only when that does not make room
   * for one more item of the largest size seen.
   */
  async beforeClaim(): Promise<string | undefined> {
    if (this.timeIsUp()) return `--max-hours ${this.#o.maxHours} reached`;
    const cap = this.#o.maxDiskBytes;
    if (cap === undefined) return undefined;
    this.#usedBytes = await dirBytes(this.#o.outDir);
    if (this.#usedBytes + this.#itemBytes < cap) return undefined;
    const freed = await freeUploadedWarcs(this.#o.outDir, this.#o.log);
    if (freed.files > 0) this.#o.log.log('info', `--max-disk: deleted ${freed.files} verified-uploaded WARCs (${freed.bytes} bytes) to make room`);
    this.#usedBytes = await dirBytes(this.#o.outDir);
    if (this.#usedBytes + this.#itemBytes < cap) return undefined;
    return `--max-disk ${cap} bytes reached: the data folder holds ${this.#usedBytes} bytes${this.#itemBytes ? ` and an item needs about ${this.#itemBytes}` : ''}`;
  }

  /** An item starts in `itemDir` (its shard folder): its size is watched from now on. */
  async itemStarted(itemDir: string): Promise<void> {
    const total = await dirBytes(this.#o.outDir);
    const own = await dirBytes(itemDir);
    this.#item = { dir: itemDir, baseBytes: total - own, peakBytes: own };
    this.#usedBytes = total;
  }

  /**
   * During an item (called every few hundred ms): true when the folder is at the disk cap, or
   * would be within two more intervals at the growth since the last call (what is in flight
   * still lands after a stop), so the item should stop and give the rest back. Only the item's
   * folder is walked; the rest of the folder is taken as it was when the item started.
   */
  async diskFull(): Promise<boolean> {
    const item = this.#item;
    if (this.#o.maxDiskBytes === undefined || !item) return false;
    const own = await dirBytes(item.dir);
    item.peakBytes = Math.max(item.peakBytes, own);
    const used = item.baseBytes + own;
    const growth = Math.max(0, used - this.#usedBytes);
    this.#usedBytes = used;
    return used + 2 * growth >= this.#o.maxDiskBytes;
  }

  /**
   * The item is over: its peak, with half as much again for the moments between two samples (a WARC
   * being closed, the database's write-ahead log), is the room the next claim needs.
   */
  async itemFinished(): Promise<void> {
    const item = this.#item;
    if (!item) return;
    await this.diskFull();
    this.#item = undefined;
    this.noteItemBytes(Math.ceil(item.peakBytes * 1.5));
  }

  /** Records the room an item needs (the largest seen). */
  noteItemBytes(bytes: number): void {
    this.#itemBytes = Math.max(this.#itemBytes, bytes);
  }

  /** The caps for the progress line: `disk 1.2/50 GiB, 0.5/8 h, ≤ 20 MiB/s`; '' without caps. */
  describe(): string {
    const parts: string[] = [];
    if (this.#o.maxDiskBytes !== undefined) parts.push(`disk ${gib(this.#usedBytes)}/${gib(this.#o.maxDiskBytes)} GiB`);
    if (this.#o.maxHours !== undefined) parts.push(`${((this.#now() - this.#startedAt) / 3_600_000).toFixed(1)}/${this.#o.maxHours} h`);
    if (this.#o.maxBandwidthBytesPerSec !== undefined) parts.push(`≤ ${(this.#o.maxBandwidthBytesPerSec / 1024 ** 2).toFixed(1)} MiB/s`);
    return parts.join(', ');
  }
}

const gib = (n: number) => (n / 1024 ** 3).toFixed(n < 1024 ** 3 ? 2 : 1);

/** Bytes of the regular files under `dir` (0 when it does not exist). */
export async function dirBytes(dir: string): Promise<number> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let total = 0;
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await dirBytes(p);
    else if (e.isFile()) total += await stat(p).then((s) => s.size, () => 0);
  }
  return total;
}

/** After the tracker accepted `done` for an uploaded item: what may be deleted to make room. */
export async function markUploaded(itemDir: string, warcs: readonly WarcReport[]): Promise<void> {
  await writeFile(join(itemDir, UPLOADED_MARKER), `${JSON.stringify({ warcs })}\n`);
}

/**
 * Deletes the WARCs under `outDir/items/*` whose upload was verified (the marker or the ledger)
 * and whose size is still the uploaded one. Never touches anything else (shard.sqlite, shard.json
 * and the marker stay: they say what the shard held). Returns what it deleted.
 */
export async function freeUploadedWarcs(outDir: string, log: Logger): Promise<{ files: number; bytes: number }> {
  const itemsDir = join(outDir, 'items');
  let items: string[];
  try {
    items = await readdir(itemsDir);
  } catch {
    return { files: 0, bytes: 0 };
  }
  let files = 0;
  let bytes = 0;
  for (const item of items) {
    const dir = join(itemsDir, item);
    const verified = new Map<string, number>();
    try {
      const marker = JSON.parse(await readFile(join(dir, UPLOADED_MARKER), 'utf8')) as { warcs?: WarcReport[] };
      for (const w of marker.warcs ?? []) verified.set(w.name, w.size);
    } catch {
      // no marker: not uploaded through the tracker
    }
    try {
      for (const u of listUploads(dir)) if (u.state === 'verified' && u.file.startsWith('warcs/')) verified.set(u.file.slice('warcs/'.length), u.size);
    } catch (err) {
      log.log('warn', `--max-disk: cannot read the upload ledger of ${dir}: ${errorMessage(err)}`);
    }
    for (const [name, size] of verified) {
      if (name.includes('/') || name.startsWith('.')) continue;
      const path = warcPath(dir, name);
      const st = await stat(path).catch(() => undefined);
      if (!st || st.size !== size) continue;
      await unlink(path);
      files++;
      bytes += size;
    }
  }
  return { files, bytes };
}
