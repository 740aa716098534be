/**
 * Which URLs a capture tries and whether it runs (ARCHITECTURE.md "One ID", step 4): a later
 * capture's `if` (`always`, `archived`, or a JSONPath on the primary's body), and the URL
 * template alternatives tried in order until one is archived, else the strongest answer counts.
 */
import { errorMessage } from '../../config/errors.js';
import { fillTemplate, type CaptureSpec } from '../../config/profile.js';
import type { CaptureRow, IdStatus } from '../../storage/shard/shard-db.js';
import { jsonPathQuery } from '../extract/json-path.js';
import { jsonNesting, MAX_JSON_PARSE_DEPTH } from '../extract/extract-bounds.js';
import { nothing, statusOf, STRENGTH, type CaptureResult, type CaptureStatus, type TriedUrl } from './capture-status.js';

/** A value a capture condition (`if: {json}`) counts as set. */
function isSet(v: unknown): boolean {
  return v !== null && v !== undefined && v !== false && v !== 0 && v !== '';
}

export const NOT_JSON = Symbol('not JSON');

/** The primary's body as JSON for `if: {json}`; NOT_JSON when it is not (or too deep to parse). */
function parseJsonBounded(text: string | undefined): unknown {
  if (text === undefined || jsonNesting(text, MAX_JSON_PARSE_DEPTH) > MAX_JSON_PARSE_DEPTH) return NOT_JSON;
  try {
    return JSON.parse(text);
  } catch {
    return NOT_JSON;
  }
}

/** The primary's body as JSON, parsed once, only when a condition first asks. */
export function lazyJson(text: string | undefined): () => unknown {
  let parsed: unknown;
  let done = false;
  return () => {
    if (!done) {
      done = true;
      parsed = parseJsonBounded(text);
    }
    return parsed;
  };
}

/** Why a secondary capture is not fetched (its `if`), or undefined when it is. */
export function skippedBecause(spec: CaptureSpec, status: IdStatus, primaryDoc: () => unknown): string | undefined {
  const when = spec.when;
  if (when === 'always') return undefined;
  const label = typeof when === 'string' ? when : `{json: "${when.json}"}`;
  if (status !== 'archived') return `if: ${label}, and the primary is ${status}`;
  if (when === 'archived') return undefined;
  const doc = primaryDoc();
  let selected: unknown[] = [];
  try {
    if (doc !== NOT_JSON) selected = jsonPathQuery(doc, when.json, 1000);
  } catch {
    selected = [];
  }
  if (selected.some(isSet)) return undefined;
  const what = selected.length === 0 ? (doc === NOT_JSON ? 'nothing (the primary is not JSON)' : 'nothing') : selected.slice(0, 3).map((v) => JSON.stringify(v)).join(', ');
  return `if: ${label} selects ${what}`;
}

/**
 * Tries a capture's URL alternatives in order: the first answer decided `archived` counts;
 * when none is, the strongest (failed, restricted, gone, missing; the first of equals). Every
 * alternative's response is recorded (it is what the platform answered) and counts in rows and attempts.
 */
export async function tryAlternatives(
  spec: CaptureSpec,
  values: Record<string, string | undefined>,
  fetchAt: (url: string) => Promise<CaptureResult>,
  status: CaptureStatus,
): Promise<CaptureResult> {
  const tried: TriedUrl[] = [];
  const rows: CaptureRow[] = [];
  let attempts = 0;
  let best: CaptureResult | undefined;
  for (const [j, template] of spec.urlTemplates.entries()) {
    let url: string | undefined;
    let why = '';
    try {
      url = fillTemplate(template, values);
    } catch (err) {
      why = errorMessage(err);
    }
    let one: CaptureResult;
    if (url !== undefined) one = { ...(await fetchAt(url)), url, alternative: j };
    else {
      const unbuilt = { ...nothing(), error: why, unbuilt: true, alternative: j };
      one = { ...unbuilt, decision: status.decide(unbuilt, false) };
    }
    attempts += one.attempts;
    rows.push(...one.rows);
    tried.push({ url: one.url ?? template, http: one.error ? null : one.status || null, outcome: one.error ? 'error' : statusOf(one), ...(one.error ? { error: one.error } : {}) });
    if (statusOf(one) === 'archived') {
      best = one;
      break;
    }
    if (!best || STRENGTH[statusOf(one)] > STRENGTH[statusOf(best)]) best = one;
  }
  return { ...best!, rows, attempts, tried, http: tried[best!.alternative!]!.http };
}
