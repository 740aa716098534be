/** How an upload fails: the error classes and their stable codes, and which network errors mean "unreachable". */
import { InputError, LifeboatError, type ErrorPolicy } from '../../config/errors.js';

/**
 * Stable codes of upload failures. A file whose upload fails with any of these is never marked
 * verified in the ledger and never deleted.
 */
export const UPLOAD_ERROR_CODES = [
  'E_UPLOAD_UNREACHABLE', // endpoint refused the connection / DNS / timeout
  'E_UPLOAD_AUTH', // the store rejected the credentials (403, InvalidAccessKeyId, SignatureDoesNotMatch)
  'E_UPLOAD_HTTP', // any other non-success reply, after retries
  'E_UPLOAD_SIZE_MISMATCH', // the stored object's size differs from the local file
  'E_UPLOAD_CHECKSUM', // an ETag/MD5/sha256 of the stored bytes differs from the local bytes
  'E_UPLOAD_FILE_CHANGED', // the local file changed while it was being uploaded
  'E_UPLOAD_MANIFEST_MISMATCH', // shard.json lists a different sha256 for the local WARC
  'E_UPLOAD_FAILED', // summary error: one or more files failed (see `failures`)
] as const;
export type UploadErrorCode = (typeof UPLOAD_ERROR_CODES)[number];

/** An upload that did not (or may not) land intact. `file` is the shard-relative path. */
export class UploadError extends LifeboatError {
  readonly file: string | undefined;
  readonly status: number | undefined;
  constructor(
    message: string,
    options: { code: UploadErrorCode; file?: string; status?: number; policy?: ErrorPolicy; cause?: unknown },
  ) {
    super(message, { code: options.code, policy: options.policy ?? 'give-up', cause: options.cause });
    this.file = options.file;
    this.status = options.status;
  }
}

/** Raised when a required credential is missing: the CLI exits 2 and says where to put it. */
export class MissingCredentialsError extends InputError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { code: 'E_UPLOAD_CREDENTIALS', cause: options.cause });
  }
}

/** Node's network error codes that mean "could not reach the endpoint at all". */
export const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export function networkCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (UNREACHABLE_CODES.has(code) || code === 'ECONNRESET' || code === 'EPIPE' || code.startsWith('UND_ERR'))) return code;
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) return networkCode(errors[0]);
  }
  return undefined;
}
