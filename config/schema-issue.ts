import type { z } from 'zod';

/**
 * Turns zod issues into the one line a user reads: which key is wrong and, for a misspelt key,
 * which key was probably meant. Shared by profiles and tracker project files.
 */
type Issue = z.core.$ZodIssue;

/**
 * The issue to report. A misspelt key comes first: `captres:` also makes `captures` missing, and
 * "captures: expected array, received undefined" hides the real mistake.
 */
export function primaryIssue(issues: readonly Issue[]): Issue {
  const first = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
  if (first.code === 'invalid_key' && first.issues[0]) return { ...first.issues[0], path: first.path } as Issue; // the key's own rule, not "Invalid key in record"
  return first.code === 'invalid_union' ? unionBranchIssue(first) ?? first : first;
}

/**
 * A union (a selector is a JSONPath string or an object) fails as "Invalid input"; the branch
 * whose type matched (not a bare type mismatch at the union's own path) says what is wrong.
 */
function unionBranchIssue(issue: Extract<Issue, { code: 'invalid_union' }>): Issue | undefined {
  const branch = issue.errors.find((errs) => errs.length > 0 && !errs.every((e) => e.code === 'invalid_type' && e.path.length === 0));
  if (!branch) return undefined;
  const inner = primaryIssue(branch);
  return { ...inner, path: [...issue.path, ...inner.path] } as Issue;
}

/** `captures[0].extract.media[2]`; undefined for the top level. */
export function formatKeyPath(path: readonly PropertyKey[]): string | undefined {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || undefined;
}

/** The issue's message; an unknown key names itself and the closest allowed key. */
export function issueMessage(issue: Issue, schema: z.ZodType): string {
  if (issue.code !== 'unrecognized_keys') return issue.message;
  const allowed = allowedKeys(schemaAt(schema, issue.path));
  const each = issue.keys.map((key) => {
    const guess = closest(key, allowed);
    return `"${key}"${guess ? ` (did you mean "${guess}"?)` : ''}`;
  });
  const hint = allowed.length > 0 && each.every((e) => !e.includes('did you mean')) ? ` (allowed here: ${allowed.join(', ')})` : '';
  return `unknown key${issue.keys.length > 1 ? 's' : ''} ${each.join(', ')}${hint}`;
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  in?: z.ZodType;
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** Wrappers that do not change what keys an object takes. */
function unwrap(schema: z.ZodType): z.ZodType[] {
  const def = defOf(schema);
  if (def.innerType) return unwrap(def.innerType);
  if (def.type === 'pipe' && def.in) return unwrap(def.in);
  if (def.type === 'union' && def.options) return def.options.flatMap(unwrap);
  return [schema];
}

/** The schemas that may sit at `path` (several when a union is on the way). */
function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): z.ZodType[] {
  let here = unwrap(schema);
  for (const part of path) {
    here = here.flatMap((s) => {
      const def = defOf(s);
      if (def.type === 'object' && def.shape && typeof part === 'string' && def.shape[part]) return unwrap(def.shape[part]);
      if (def.type === 'array' && def.element && typeof part === 'number') return unwrap(def.element);
      if (def.type === 'record' && def.valueType) return unwrap(def.valueType);
      return [];
    });
  }
  return here;
}

function allowedKeys(schemas: z.ZodType[]): string[] {
  const keys = new Set<string>();
  for (const s of schemas) {
    const def = defOf(s);
    if (def.type === 'object' && def.shape) for (const k of Object.keys(def.shape)) keys.add(k);
  }
  return [...keys];
}

/** The allowed key nearest to `key` by edit distance (transpositions count once), if near enough to be a typo. */
export function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  // A third of the longer name, at least 1: "captres" → "captures", "lease_sec" → "lease_secs", not "name" → "rate".
  const limit = best ? Math.max(1, Math.floor(Math.max(key.length, best.length) / 3)) : 0;
  return best && bestDistance <= limit ? best : undefined;
}

/** Optimal string alignment distance (Damerau–Levenshtein without repeated edits of one substring). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
