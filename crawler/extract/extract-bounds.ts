/**
 * Bounds on what extraction keeps (issue 11 §1): a hostile post must not be able to make the
 * shard database — or the JSON.stringify that writes it — fail. Every value stored for a post is
 * cut to `max_field_depth` levels, `max_field_chars` characters per string and `max_field_values`
 * values per post in all; each cut is reported as a note on the ID.
 */
import type { Profile } from '../../config/profile.js';

export interface ExtractLimits {
  /** Decoded bytes extraction looks at (`max_extract_bytes`). */
  maxBytes: number;
  /** Nesting levels kept in a field value (`max_field_depth`). */
  maxFieldDepth: number;
  /** Characters kept of one string (`max_field_chars`). */
  maxFieldChars: number;
  /** Values (scalars, list items, object members) kept per capture, over all fields (`max_field_values`). */
  maxFieldValues: number;
  /** HTML nesting beyond which parsing stops (`max_html_depth`). */
  maxHtmlDepth: number;
  /** Wall-clock budget of one capture's extraction (`max_extract_ms`). */
  maxMs: number;
  /** Media references kept per capture (`media.max_per_post`). */
  maxMedia: number;
}

/** The extraction limits of a profile (its politeness section and `media.max_per_post`). */
export function extractLimits(profile: Pick<Profile, 'politeness' | 'media'>): ExtractLimits {
  const pol = profile.politeness;
  return {
    maxBytes: pol.maxExtractBytes,
    maxFieldDepth: pol.maxFieldDepth,
    maxFieldChars: pol.maxFieldChars,
    maxFieldValues: pol.maxFieldValues,
    maxHtmlDepth: pol.maxHtmlDepth,
    maxMs: pol.maxExtractMs,
    maxMedia: profile.media.maxPerPost,
  };
}

/** JSON nested deeper than this is not parsed at all: V8 parses it, but at ~1 µs per level. */
export const MAX_JSON_PARSE_DEPTH = 10_000;

/** The deepest `[`/`{` nesting of a JSON text (strings skipped), stopping once past `limit`. */
export function jsonNesting(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** Cuts one capture's extracted fields to the limits; the notes say what was cut. */
export class ValueBounder {
  #left: number;
  readonly notes = new Set<string>();

  constructor(private readonly limits: Pick<ExtractLimits, 'maxFieldDepth' | 'maxFieldChars' | 'maxFieldValues'>) {
    this.#left = limits.maxFieldValues;
  }

  /** Values still allowed (callers stop selecting once this is 0). */
  get left(): number {
    return this.#left;
  }

  /** `value` cut to the limits, for field `name`; undefined once the value budget is spent. */
  bound(name: string, value: unknown): unknown {
    return this.#bound(name, value, 1);
  }

  #bound(name: string, value: unknown, depth: number): unknown {
    if (this.#left <= 0) {
      this.notes.add(`more than ${this.limits.maxFieldValues} values: the rest not kept`);
      return undefined;
    }
    this.#left--;
    if (typeof value === 'string') {
      if (value.length <= this.limits.maxFieldChars) return value;
      this.notes.add(`field ${name}: a string of ${value.length} characters cut to ${this.limits.maxFieldChars}`);
      return value.slice(0, this.limits.maxFieldChars);
    }
    if (value === null || typeof value !== 'object') return typeof value === 'number' && !Number.isFinite(value) ? null : value;
    if (depth >= this.limits.maxFieldDepth) {
      this.notes.add(`field ${name}: nested deeper than ${this.limits.maxFieldDepth} levels, cut there`);
      return null;
    }
    if (Array.isArray(value)) {
      const out: unknown[] = [];
      for (const item of value) {
        if (this.#left <= 0) {
          this.notes.add(`field ${name}: more than ${this.limits.maxFieldValues} values, cut`);
          break;
        }
        out.push(this.#bound(name, item, depth + 1));
      }
      return out;
    }
    const out = Object.create(null) as Record<string, unknown>; // a "__proto__" key stays a key
    for (const key of Object.keys(value)) {
      if (this.#left <= 0) {
        this.notes.add(`field ${name}: more than ${this.limits.maxFieldValues} values, cut`);
        break;
      }
      out[key.slice(0, this.limits.maxFieldChars)] = this.#bound(name, (value as Record<string, unknown>)[key], depth + 1);
    }
    return out;
  }
}
