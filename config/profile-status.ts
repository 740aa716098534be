import parseJsonPath from 'jsonpath-rfc9535/parser';
import { ConfigError } from './errors.js';
import type { ProfileData, StatusRuleData } from './profile-schema.js';

/** What a status rule may decide: a final status, or `retry` (not now: fetch again later). */
export type RuleVerdict = StatusRuleData['then'];
type Scalar = string | number | boolean | null;

/** A status rule checked and compiled (its regular expression built once). */
export interface StatusRule {
  /** Where the profile wrote it, for notes and messages: `status.rules[1]`. */
  at: string;
  /** HTTP statuses it applies to; undefined for any. */
  codes: number[] | undefined;
  /** JSONPath into the body, when the rule looks at it. */
  json: string | undefined;
  /** The selected value must equal one of these (strict, JSON scalars). */
  equals: Scalar[] | undefined;
  /** true: `json` must select something (not null); false: it must select nothing (or only null). */
  exists: boolean | undefined;
  /** A regular expression the decoded body must match. */
  body: RegExp | undefined;
  then: RuleVerdict;
}

export interface StatusConfig {
  archived: number[];
  missing: number[];
  gone: number[];
  restricted: number[];
  /** Bodies (trimmed) of an archived primary that mean "missing" (the older form of a body rule). */
  missingBodies: string[];
  /** Tried in order before the status lists; the first that matches decides. */
  rules: StatusRule[];
}

/** The profile's `status` section as the crawl uses it; errors name the file and key path. */
export function resolveStatus(data: ProfileData['status'], file: string): StatusConfig {
  return {
    archived: data.archived,
    missing: data.missing,
    gone: data.gone,
    restricted: data.restricted,
    missingBodies: data.missing_body,
    rules: data.rules.map((r, i) => compileRule(r, `status.rules[${i}]`, file)),
  };
}

function compileRule(r: StatusRuleData, at: string, file: string): StatusRule {
  if (r.code === undefined && r.json === undefined && r.body === undefined) {
    throw new ConfigError('a status rule needs at least one of code, json, body (it would match every response)', { file, keyPath: at });
  }
  if (r.json === undefined && (r.equals !== undefined || r.exists !== undefined)) {
    throw new ConfigError(`${r.equals !== undefined ? 'equals' : 'exists'} compares what json selects: add json`, { file, keyPath: `${at}.${r.equals !== undefined ? 'equals' : 'exists'}` });
  }
  if (r.equals !== undefined && r.exists !== undefined) {
    throw new ConfigError('use equals or exists, not both', { file, keyPath: `${at}.exists` });
  }
  if (r.json !== undefined) {
    try {
      parseJsonPath(r.json);
    } catch (err) {
      throw new ConfigError(`JSONPath "${r.json}" does not parse: ${(err as Error).message}`, { file, keyPath: `${at}.json`, cause: err });
    }
  }
  let body: RegExp | undefined;
  if (r.body !== undefined) {
    try {
      body = new RegExp(r.body, 'u');
    } catch (err) {
      throw new ConfigError(`regular expression /${r.body}/ does not compile: ${(err as Error).message}`, { file, keyPath: `${at}.body`, cause: err });
    }
  }
  return {
    at,
    codes: r.code === undefined ? undefined : Array.isArray(r.code) ? r.code : [r.code],
    json: r.json,
    equals: r.equals === undefined ? undefined : Array.isArray(r.equals) ? r.equals : [r.equals],
    // json alone means "json selects something".
    exists: r.exists ?? (r.json !== undefined && r.equals === undefined ? true : undefined),
    body,
    then: r.then,
  };
}
