import { closeSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { InputError, StorageError, errorMessage } from '../../config/errors.js';

/**
 * One writer per shard or merged directory (issue 10 §2). `DIR/.lifeboat.lock` holds the owner's
 * pid, the kernel's start time of that pid, the boot id, the host name, the command and when it
 * started. It is created with O_EXCL; a second writer finds it and refuses at once
 * (`DirInUseError`, exit 2). A lock is stale — and taken over without any manual cleanup — when
 * it was written on this host and its pid is gone, the pid now belongs to another process (its
 * start time differs: pid reuse) or the machine rebooted since (the boot id differs: power loss).
 *
 * Why not proper-lockfile: it decides staleness by the lock's mtime, refreshed on a timer, so a
 * run started right after a `kill -9` is refused for the `stale` period (≥ 5 s, default 10 s),
 * and a crawl whose event loop is busy for longer than that loses its lock to a second process.
 * A pid + start-time check is exact and immediate on one machine; it cannot see processes on
 * another host, so a lock written by another host (a shared network disk) is treated as live and
 * the message says so.
 *
 * Worker threads of the holding process (`crawl --workers N`) write under the main thread's
 * lock; they never take one themselves.
 */
export const LOCK_FILE = '.lifeboat.lock';

export interface LockOwner {
  pid: number;
  /** Field 22 of /proc/PID/stat (clock ticks since boot); undefined where /proc is absent. */
  procStart?: string;
  bootId?: string;
  host: string;
  command: string;
  startedAt: string;
}

/** Another live process holds the directory. */
export class DirInUseError extends InputError {
  readonly owner: LockOwner;
  constructor(dir: string, owner: LockOwner) {
    const where = owner.host === hostname() ? '' : ` on host ${owner.host}; if that machine is gone, delete ${join(dir, LOCK_FILE)}`;
    super(`${dir} is in use by process ${owner.pid} (${owner.command}, started ${owner.startedAt}${where}); wait for it to finish or stop it first`, {
      code: 'E_DIR_IN_USE',
    });
    this.owner = owner;
  }
}

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The start time of `pid` from /proc/PID/stat (after the `(comm)` field, which may hold spaces). */
export function processStartTime(pid: number | 'self'): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19]; // field 22 overall; fields[0] here is field 3 (state)
}

function bootId(): string | undefined {
  return readProc('/proc/sys/kernel/random/boot_id')?.trim();
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the process that wrote `owner` is still running (always true for another host's lock). */
export function ownerAlive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true;
  const boot = bootId();
  if (owner.bootId && boot && owner.bootId !== boot) return false;
  if (!pidAlive(owner.pid)) return false;
  if (owner.procStart === undefined) return true;
  const now = processStartTime(owner.pid);
  return now === undefined || now === owner.procStart;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as LockOwner;
    return Number.isInteger(o.pid) && typeof o.host === 'string' ? o : undefined;
  } catch {
    return undefined;
  }
}

/** The live owner of `dir`'s lock, if any (for `status`/`verify`, which read while a crawl runs). */
export function lockHolder(dir: string): LockOwner | undefined {
  const text = readProc(join(dir, LOCK_FILE));
  const owner = text === undefined ? undefined : parseOwner(text);
  return owner && ownerAlive(owner) ? owner : undefined;
}

export interface DirLock {
  readonly dir: string;
  readonly owner: LockOwner;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

/** An unreadable lock younger than this may be one being written right now. */
const TORN_AFTER_MS = 1000;

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

const held = new Set<string>();
let exitHookInstalled = false;

/**
 * Takes the lock on `dir` (which must exist) for `command`, or throws `DirInUseError`. A stale
 * lock is moved aside and checked again before it is removed, so two processes that both find
 * the same stale lock cannot both win.
 */
export function acquireDirLock(dir: string, command: string): DirLock {
  const path = join(dir, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, procStart: processStartTime('self'), bootId: bootId(), host: hostname(), command, startedAt: new Date().toISOString() };
  const text = `${JSON.stringify(owner)}\n`;
  for (let attempt = 0; attempt < 20; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StorageError(`cannot lock ${dir}: ${errorMessage(err)}`, { code: 'E_OUT_DIR', cause: err });
      }
      const seen = readProc(path);
      if (seen === undefined) continue; // removed meanwhile: try again
      const other = parseOwner(seen);
      if (other && ownerAlive(other)) throw new DirInUseError(dir, other);
      if (!other && ageMs(path) < TORN_AFTER_MS) {
        // Empty or half-written: another process may be between its create and its write. Wait a little.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        continue;
      }
      // A dead owner, or a torn lock (power lost between create and write) older than a second.
      takeOverStale(path, seen);
      continue;
    }
    try {
      writeSync(fd, text);
    } finally {
      closeSync(fd);
    }
    held.add(path);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', () => {
        for (const p of held) removeIfOurs(p);
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
        removeIfOurs(path);
      },
    };
  }
  throw new StorageError(`cannot lock ${dir}: its lock file keeps changing; is another lifeboat starting on it?`, { code: 'E_DIR_IN_USE' });
}

function takeOverStale(path: string, seen: string): void {
  const aside = `${path}.stale-${process.pid}`;
  try {
    renameSync(path, aside);
  } catch {
    return; // someone else moved it first
  }
  if (readProc(aside) !== seen) {
    // We moved a fresh lock another process had just taken: put it back (link fails if a third took the name).
    try {
      linkSync(aside, path);
    } catch {
      /* the name is held again; our next attempt reads it */
    }
  }
  try {
    unlinkSync(aside);
  } catch {
    /* already gone */
  }
}

function removeIfOurs(path: string): void {
  const owner = parseOwner(readProc(path) ?? '');
  if (owner?.pid === process.pid && owner.host === hostname()) {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  }
}
