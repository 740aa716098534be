/**
 * Error classes with a stable `code` and a policy. Library code throws these; only the CLI
 * turns them into exit codes (see scripts/cli/cli.ts).
 *
 * - `retry`: a transient failure; try the same work again later (with backoff).
 * - `give-up`: this unit of work (an ID, a URL) cannot succeed; record it and go on.
 * - `stop`: the run cannot go on (bad input, disk full, corrupt state); stop cleanly.
 */
export type ErrorPolicy = 'retry' | 'give-up' | 'stop';

export class LifeboatError extends Error {
  readonly code: string;
  readonly policy: ErrorPolicy;
  constructor(message: string, options: { code: string; policy: ErrorPolicy; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.policy = options.policy;
  }
}

/** Bad user input: a profile, a flag, a range. The CLI exits 2. */
export class InputError extends LifeboatError {
  constructor(message: string, options: { code?: string; cause?: unknown } = {}) {
    super(message, { code: options.code ?? 'E_INPUT', policy: 'stop', cause: options.cause });
  }
}

/** A profile or option file that does not validate; the message names the file and key path. */
export class ConfigError extends InputError {
  readonly file: string | undefined;
  readonly keyPath: string | undefined;
  constructor(message: string, options: { file?: string; keyPath?: string; cause?: unknown } = {}) {
    const where = [options.file, options.keyPath].filter(Boolean).join(': ');
    super(where ? `${where}: ${message}` : message, { code: 'E_CONFIG', cause: options.cause });
    this.file = options.file;
    this.keyPath = options.keyPath;
  }
}

/** A fetch that may succeed later (5xx, 429, reset, timeout, short body). */
export class RetryableFetchError extends LifeboatError {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options: { code: string; retryAfterMs?: number; cause?: unknown }) {
    super(message, { code: options.code, policy: 'retry', cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A URL the crawler must not fetch (out of scope, private address, robots.txt, bad scheme). */
export class ScopeError extends LifeboatError {
  constructor(message: string, options: { code?: string; cause?: unknown } = {}) {
    super(message, { code: options.code ?? 'E_SCOPE', policy: 'give-up', cause: options.cause });
  }
}

/** Local storage failed (disk full, unwritable directory, corrupt shard). The run stops. */
export class StorageError extends LifeboatError {
  constructor(message: string, options: { code?: string; cause?: unknown } = {}) {
    super(message, { code: options.code ?? 'E_STORAGE', policy: 'stop', cause: options.cause });
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    // Node's system errors already start with their code ("ENOTDIR: not a directory, mkdir …").
    return typeof code === 'string' && !(err instanceof LifeboatError) && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/**
 * A flag that takes an http(s) URL (`--tracker`, `--endpoint`): anything else — `127.0.0.1:8070`
 * without its scheme, say — is bad usage, said on one line with the URL as it should be written.
 */
export function assertHttpUrl(flag: string, raw: string): void {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new InputError(`${flag} ${JSON.stringify(raw)} is not an http(s) URL: write it with its scheme, e.g. http://${raw.replace(/^[a-z]+:\/\//i, '')}`, { code: 'E_USAGE' });
  }
}
