/**
 * What an upload run returns (per file and in total), the error thrown when some files did
 * not make it, and the logger interface the upload modules accept.
 */
import type { LifeboatError } from '../../config/errors.js';
import type { Logger } from '../../config/logger.js';
import { UploadError } from './errors.js';

/** The logger an upload reports to (config/logger.ts): optional everywhere; uploads never write to the console. */
export type UploadLogger = Pick<Logger, 'info' | 'warn'>;

export const FILE_OUTCOMES = ['uploaded', 'skipped', 'failed'] as const;
export type FileOutcome = (typeof FILE_OUTCOMES)[number];

export interface FileUploadResult {
  /** Shard-relative file name. */
  file: string;
  /** Object key (S3) or `identifier/filename` (IA). */
  key: string;
  size: number;
  outcome: FileOutcome;
  /** Bytes sent by this run (0 for skipped; less than `size` when a multipart upload resumed). */
  bytesSent: number;
  partsSent?: number;
  partsReused?: number;
  /** Whether the local file was deleted (only after verification, only when asked). */
  deleted: boolean;
  error?: LifeboatError;
}

export interface UploadRunResult {
  /** Canonical target URL (`s3://bucket/prefix`, `ia://identifier`). */
  target: string;
  files: FileUploadResult[];
  bytesSent: number;
  elapsedMs: number;
  /** bytesSent over the whole run's wall time, MB/s (10^6 bytes). */
  mbPerSec: number;
}

/** Some files failed; the others are uploaded, verified and recorded. `result` has the details. */
export class UploadIncompleteError extends UploadError {
  readonly result: UploadRunResult;
  constructor(result: UploadRunResult) {
    const failed = result.files.filter((f) => f.outcome === 'failed');
    const lines = failed.map((f) => `  ${f.file}: ${f.error?.message ?? 'failed'}`);
    super(`${failed.length} of ${result.files.length} files were not uploaded to ${result.target}:\n${lines.join('\n')}\nRun the same upload again to retry only these.`, {
      code: 'E_UPLOAD_FAILED',
      policy: 'stop',
      cause: failed[0]?.error,
    });
    this.result = result;
  }
}

/** Sums up a run started at `startedMs` (performance.now()); throws UploadIncompleteError when any file failed. */
export function finishRun(target: string, files: FileUploadResult[], startedMs: number): UploadRunResult {
  const elapsedMs = performance.now() - startedMs;
  const bytesSent = files.reduce((a, r) => a + r.bytesSent, 0);
  const run: UploadRunResult = { target, files, bytesSent, elapsedMs, mbPerSec: bytesSent / 1e6 / (elapsedMs / 1000) };
  if (files.some((r) => r.outcome === 'failed')) throw new UploadIncompleteError(run);
  return run;
}
