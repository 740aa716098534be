import { StorageError } from '../../config/errors.js';

/**
 * One way to say "the disk is full", wherever it is noticed (issue 11 §4): a WARC write
 * (ENOSPC), SQLite growing its file (SQLITE_FULL) or mapping its `-shm` on a full tmpfs
 * (SQLITE_IOERR_SHMSIZE), a quota (EDQUOT), a lock or temp file.
 */
export const DISK_FULL_MESSAGE = 'disk full: free space and run the same command again to resume';

const CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', 'SQLITE_IOERR_SHMSIZE']);

export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (CODES.has((e as NodeJS.ErrnoException).code ?? '')) return true;
  }
  return false;
}

/** `err` as the disk-full StorageError when it is one, else `undefined`. */
export function diskFullError(err: unknown, where: string): StorageError | undefined {
  return isDiskFull(err) ? new StorageError(`${DISK_FULL_MESSAGE} (${where})`, { code: 'E_DISK_FULL', cause: err }) : undefined;
}
