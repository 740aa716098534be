import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { InputError, StorageError, errorMessage } from '../../config/errors.js';
import { diskFullError } from './disk-full.js';

/**
 * One writer per shard or merged directory (issue 10 §2, issue 21 §4). The lock is one the kernel
 * holds: the holder keeps `DIR/.lifeboat.lock.db` open with SQLite's own file lock taken
 * (`locking_mode=EXCLUSIVE` and a `BEGIN EXCLUSIVE` never committed: a POSIX advisory lock on
 * the open file). A second writer — in this process, another one, or another PID namespace on
 * the same host (a container sharing the volume) — finds it taken and refuses at once
 * (`DirInUseError`, exit 2). When the holder dies (`kill -9`, a crash, a power cut) the kernel
 * drops the lock with its file descriptors, so the next run takes it without any cleanup; a live
 * holder is never judged stale, whatever its pid looks like from here.
 *
 * `DIR/.lifeboat.lock` is only the holder's card for messages and `status`: pid, the kernel's
 * start time of that pid, boot id, host name, command and start; it is written after the lock
 * is taken and decides nothing on this host. One exception: a card naming another host with the
 * kernel lock free is obeyed, because a shared network disk may not carry locks between
 * machines; the message says which host and that the file may be deleted if that machine is gone.
 *
 * Why not proper-lockfile: it decides staleness by the lock's mtime, refreshed on a timer, so a
 * run started right after a `kill -9` is refused for the `stale` period, and a crawl whose event
 * loop is busy for longer loses its lock. Why not a pid check (what this was before): a pid from
 * another PID namespace is not in this one's process table, so a live crawl was taken as dead.
 *
 * Worker threads of the holding process (`crawl --workers N`) write under the main thread's
 * lock; they never take one themselves.
 */
export const LOCK_FILE = '.lifeboat.lock';
/** The file whose kernel lock is the directory's lock. */
export const LOCK_DB = '.lifeboat.lock.db';

export interface LockOwner {
  pid: number;
  /** Field 22 of /proc/PID/stat (clock ticks since boot); undefined where /proc is absent. */
  procStart?: string;
  bootId?: string;
  host: string;
  command: string;
  startedAt: string;
}

/** Another live process holds the directory (`owner` undefined: its card could not be read). */
export class DirInUseError extends InputError {
  readonly owner: LockOwner | undefined;
  constructor(dir: string, owner: LockOwner | undefined, kernelHeld = true) {
    const where = !owner || owner.host === hostname() || kernelHeld ? '' : ` on host ${owner.host}; if that machine is gone, delete ${join(dir, LOCK_FILE)}`;
    const who = owner ? `process ${owner.pid} (${owner.command}, started ${owner.startedAt}${where})` : `another process (its ${LOCK_FILE} cannot be read)`;
    super(`${dir} is in use by ${who}; wait for it to finish or stop it first`, { code: 'E_DIR_IN_USE' });
    this.owner = owner;
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The start time of `pid` from /proc/PID/stat (after the `(comm)` field, which may hold spaces). */
export function processStartTime(pid: number | 'self'): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19]; // field 22 overall; fields[0] here is field 3 (state)
}

function bootId(): string | undefined {
  return readText('/proc/sys/kernel/random/boot_id')?.trim();
}

function parseOwner(text: string | undefined): LockOwner | undefined {
  if (text === undefined) return undefined;
  try {
    const o = JSON.parse(text) as LockOwner;
    return o !== null && typeof o === 'object' && Number.isInteger(o.pid) && typeof o.host === 'string' ? o : undefined;
  } catch {
    return undefined;
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

/**
 * Whether some process holds `dir`'s kernel lock: a shared lock is tried on the lock database
 * and let go at once (it never blocks the holder, and a writer starting meanwhile waits it out).
 */
function kernelLockHeld(dir: string): boolean {
  let db: Database.Database;
  try {
    db = new Database(join(dir, LOCK_DB), { readonly: true, fileMustExist: true, timeout: 0 });
  } catch {
    return false; // no lock database: never locked by this version
  }
  try {
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    return false;
  } catch (err) {
    return isBusy(err);
  } finally {
    db.close();
  }
}

/** The live owner of `dir`'s lock, if any (for `status`/`verify`, which read while a crawl runs). */
export function lockHolder(dir: string): LockOwner | undefined {
  if (!kernelLockHeld(dir)) return undefined;
  return parseOwner(readText(join(dir, LOCK_FILE))) ?? { pid: 0, host: '?', command: 'unknown (lock card unreadable)', startedAt: '?' };
}

export interface DirLock {
  readonly dir: string;
  readonly owner: LockOwner;
  /** Lets the lock go and removes the card if it is still ours. Idempotent. */
  release(): void;
}

/** How long a writer waits for a holder's card (written just after its lock) or a `status` probe's shared lock. */
const SETTLE_MS = 1000;

const held = new Map<string, Database.Database>();
let exitHookInstalled = false;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The lock database of `dir` opened with its exclusive lock taken; undefined when another holds it. */
function takeKernelLock(dir: string): Database.Database | undefined {
  let db: Database.Database;
  try {
    db = new Database(join(dir, LOCK_DB), { timeout: 0 });
  } catch (err) {
    throw diskFullError(err, join(dir, LOCK_DB)) ?? new StorageError(`cannot lock ${dir}: ${errorMessage(err)}`, { code: 'E_OUT_DIR', cause: err });
  }
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = MEMORY'); // no -journal file next to it, ever (this build refuses OFF)
    db.exec('BEGIN EXCLUSIVE'); // held until the connection closes (or the process dies)
    return db;
  } catch (err) {
    db.close();
    if (isBusy(err)) return undefined;
    throw diskFullError(err, join(dir, LOCK_DB)) ?? new StorageError(`cannot lock ${dir}: ${errorMessage(err)}`, { code: 'E_OUT_DIR', cause: err });
  }
}

/** Takes the lock on `dir` (which must exist) for `command`, or throws `DirInUseError`. */
export function acquireDirLock(dir: string, command: string): DirLock {
  const path = join(dir, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, procStart: processStartTime('self'), bootId: bootId(), host: hostname(), command, startedAt: new Date().toISOString() };
  const until = Date.now() + SETTLE_MS;
  let db: Database.Database | undefined;
  for (;;) {
    db = takeKernelLock(dir);
    if (db) break;
    // Held. Its card names the holder; a card not there yet (just locked) or a `status` probe's
    // brief shared lock settle within a moment.
    const other = parseOwner(readText(path));
    if (other || Date.now() > until) throw new DirInUseError(dir, other);
    sleepSync(50);
  }
  // The kernel lock is ours. A card naming another host may be a holder our kernel cannot see.
  const card = parseOwner(readText(path));
  if (card && card.host !== hostname()) {
    db.close();
    throw new DirInUseError(dir, card, false);
  }
  try {
    // Written in place under the kernel lock (no temporary file: one page on a nearly full disk);
    // a reader that catches it half-written names "unknown" for a moment.
    writeFileSync(path, `${JSON.stringify(owner)}\n`, { mode: 0o644 });
  } catch (err) {
    db.close();
    throw diskFullError(err, path) ?? new StorageError(`cannot lock ${dir}: ${errorMessage(err)}`, { code: 'E_OUT_DIR', cause: err });
  }
  held.set(path, db);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const [p, d] of held) letGo(p, d);
    });
  }
  let released = false;
  return {
    dir,
    owner,
    release() {
      if (released) return;
      released = true;
      held.delete(path);
      letGo(path, db);
    },
  };
}

/** Removes the card (while the lock is still ours, so it is never a newer holder's), then lets the lock go. */
function letGo(path: string, db: Database.Database): void {
  const card = parseOwner(readText(path));
  if (card?.pid === process.pid && card.host === hostname()) {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  }
  try {
    db.close();
  } catch {
    /* closed already */
  }
}
