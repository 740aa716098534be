import { z } from 'zod';
import { InputError } from './errors.js';

/**
 * How a platform writes its post IDs (a profile's `ids.codec`). Internally an ID is a
 * non-negative safe integer (up to 2^53 - 1); `encode` gives the platform's notation used in
 * URLs and on the command line.
 */
export const codecSpecSchema = z.union([z.enum(['integer', 'base36', 'hex']), z.strictObject({ padded: z.number().int().min(1).max(16) })]);
export type CodecSpec = z.infer<typeof codecSpecSchema>;

export interface IdCodec {
  readonly name: string;
  encode(id: number): string;
  decode(text: string): number;
}

function checkedNumber(text: string, radix: number, pattern: RegExp, codecName: string): number {
  if (!pattern.test(text)) {
    throw new InputError(`"${text}" is not a valid ${codecName} ID`, { code: 'E_ID' });
  }
  const value = radix === 10 ? Number(text) : parseInt(text, radix);
  if (!Number.isSafeInteger(value)) {
    throw new InputError(`ID "${text}" is larger than lifeboat supports (2^53 - 1)`, { code: 'E_ID' });
  }
  return value;
}

export function createCodec(spec: CodecSpec): IdCodec {
  if (spec === 'integer') {
    return { name: 'integer', encode: (id) => String(id), decode: (t) => checkedNumber(t, 10, /^[0-9]{1,16}$/, 'integer') };
  }
  if (spec === 'base36') {
    return {
      name: 'base36',
      encode: (id) => id.toString(36),
      decode: (t) => checkedNumber(t.toLowerCase(), 36, /^[0-9a-z]{1,11}$/, 'base36'),
    };
  }
  if (spec === 'hex') {
    return {
      name: 'hex',
      encode: (id) => id.toString(16),
      decode: (t) => checkedNumber(t.toLowerCase(), 16, /^[0-9a-f]{1,14}$/, 'hex'),
    };
  }
  const width = spec.padded;
  return {
    name: `padded-${width}`,
    encode: (id) => String(id).padStart(width, '0'),
    decode: (t) => checkedNumber(t, 10, /^[0-9]{1,16}$/, `zero-padded (${width} digits)`),
  };
}

/** The spec back from a codec's `name` (as a shard's meta stores it); undefined for a name it never gives. */
export function codecSpecFromName(name: string): CodecSpec | undefined {
  const padded = /^padded-(\d+)$/.exec(name);
  const spec: unknown = padded ? { padded: Number(padded[1]) } : name;
  const parsed = codecSpecSchema.safeParse(spec);
  return parsed.success ? parsed.data : undefined;
}
