import { InputError } from './errors.js';

/**
 * How a platform writes its post IDs. Internally an ID is a non-negative safe integer
 * (up to 2^53 - 1); `encode` gives the platform's notation used in URLs and on the command line.
 */
export type CodecSpec = 'integer' | 'base36' | 'hex' | { padded: number };

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
