import { LifeboatError } from '../../config/errors.js';

/**
 * Errors raised by the tracker's item store and server. Each carries a stable `code`; the
 * server maps them to HTTP statuses (`describeError` in server.ts) and the client turns
 * a 4xx answer back into a `TrackerRequestError` with the same code and message.
 */

/** The lease is unknown, expired, superseded by a later claim, or held by another node. */
export class LeaseError extends LifeboatError {
  constructor(message: string, options: { code?: 'E_LEASE_STALE' | 'E_LEASE_NOT_YOURS' } = {}) {
    super(message, { code: options.code ?? 'E_LEASE_STALE', policy: 'give-up' });
  }
}

/** The nick is banned from this project. */
export class BannedError extends LifeboatError {
  constructor(nick: string) {
    super(`nick "${nick}" is banned from this project; ask the organisers why`, { code: 'E_BANNED', policy: 'stop' });
  }
}

/** Another node already registered this nick in the project: nicks have one owner (its token). */
export class NickTakenError extends LifeboatError {
  constructor(nick: string) {
    super(`nick "${nick}" is already taken in this project by another node; register with another nick (your own node keeps its token in node.json)`, {
      code: 'E_NICK_TAKEN',
      policy: 'stop',
    });
  }
}

/** An answer from the tracker that says the request itself is wrong (4xx other than 429). */
export class TrackerRequestError extends LifeboatError {
  readonly status: number;
  constructor(message: string, options: { status: number; code: string }) {
    const policy = options.status === 409 ? 'give-up' : 'stop';
    super(message, { code: options.code, policy });
    this.status = options.status;
  }
}

/** The tracker stayed unreachable (or kept answering 5xx/429) through every retry. */
export class TrackerUnavailableError extends LifeboatError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { code: 'E_TRACKER_UNAVAILABLE', policy: 'retry', cause: options.cause });
  }
}

/**
 * `done` reported WARCs that are not in the upload bucket as reported (missing, another size or
 * sha256). The item stays leased: upload again with fresh URLs and repeat `done`.
 */
export class UploadUnverifiedError extends LifeboatError {
  constructor(message: string) {
    super(message, { code: 'E_UPLOAD_UNVERIFIED', policy: 'retry' });
  }
}

/** The tracker could not reach its upload store to sign URLs or check objects. */
export class UploadStoreError extends LifeboatError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { code: 'E_UPLOAD_STORE', policy: 'retry', cause: options.cause });
  }
}
