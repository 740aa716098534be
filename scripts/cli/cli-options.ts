import { hostname } from 'node:os';
import { InvalidArgumentError } from 'commander';

/** Option parsers and exit codes shared by the command files (they import this, never cli.ts). */

/** Exit codes (a contract: README "What a shard holds"). */
export const EXIT = { ok: 0, error: 1, usage: 2, failedIds: 3 } as const;

export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
    return n;
  };
}

/** A whole number ≥ 0 (a flag where 0 turns something off). */
export function nonNegativeInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number (0 or more), got "${value}"`);
    return n;
  };
}

export function byteSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`"${value}" is not a size (e.g. 1073741824, 512M, 1G)`);
  const unit = (m[2] ?? 'b').toLowerCase()[0]!;
  const mult = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  const n = Math.floor(Number(m[1]) * mult);
  if (n < 4096) throw new InvalidArgumentError(`--warc-size must be at least 4096 bytes, got "${value}"`);
  return n;
}

/** A cap flag's size (`--max-bandwidth 20M`, `--max-disk 50G`; issue 14): the --warc-size syntax, at least 1 byte. */
export function capSize(name: string) {
  return (value: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$/i.exec(value.trim());
    const unit = (m?.[2] ?? 'b').toLowerCase()[0]!;
    const n = m ? Math.floor(Number(m[1]) * ({ b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1)) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a size such as 20M or 50G, got "${value}"`);
    return n;
  };
}

/** `--max-hours` (issue 14): a positive number of hours, fractions allowed. */
export function positiveHours(value: string): number {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`--max-hours must be a positive number of hours, got "${value}"`);
  return n;
}

export function nodeName(raw?: string): string {
  const name = (raw ?? hostname()).replace(/[^A-Za-z0-9_]+/g, '_').slice(0, 40);
  return name || 'node';
}
