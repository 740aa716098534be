import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import parseJsonPath from 'jsonpath-rfc9535/parser';
import { ConfigError } from './errors.js';
import { formatKeyPath, issueMessage, primaryIssue } from './schema-issue.js';
import { profileSchema, type ExtractData, type ProfileData, type Selector } from './profile-schema.js';

export type { Selector } from './profile-schema.js';
export type CodecSpec = ProfileData['ids']['codec'];

export interface ExtractRules {
  fields: Record<string, Selector>;
  media: Selector[];
  ids: Selector[];
}

export interface CaptureSpec {
  name: string;
  urlTemplate: string;
  type: 'json' | 'html' | 'binary';
  render: 'http' | 'browser';
  when: 'always' | 'archived';
  extract: ExtractRules | undefined;
  headers: Record<string, string>;
}

export interface Politeness {
  concurrency: number;
  perHostConcurrency: number;
  ratePerSec: number;
  robots: 'obey' | 'ignore';
  maxAttempts: number;
  timeoutMs: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxBodyBytes: number;
  maxExtractBytes: number;
  maxFieldDepth: number;
  maxFieldChars: number;
  maxFieldValues: number;
  maxHtmlDepth: number;
  maxExtractMs: number;
  maxRedirects: number;
  totalTimeoutMs: number;
  maxOutageMs: number;
}

/** A validated profile with every default applied and units converted. */
export interface Profile {
  name: string;
  description: string | undefined;
  /** Where it came from: `builtin:NAME` or a file path. */
  source: string;
  baseUrl: string;
  codec: CodecSpec;
  discover: { urlTemplate: string; jsonPath: string } | undefined;
  captures: CaptureSpec[];
  status: { archived: number[]; missing: number[]; gone: number[]; restricted: number[]; missingBodies: string[] };
  politeness: Politeness;
  media: { fetch: boolean; maxPerPost: number };
  scopeHosts: string[];
}

const BUILTIN_DIR = fileURLToPath(new URL('./profiles/', import.meta.url));

export function builtinProfileNames(): string[] {
  return ['demo', 'demo-browser', 'hackernews', 'discourse', 'lemmy'];
}

/** Reads a built-in profile by name, or a YAML/JSON file by path. */
export function loadProfile(nameOrPath: string, overrides: { baseUrl?: string } = {}): Profile {
  const builtin = /^[a-z0-9-]+$/.test(nameOrPath) ? `${BUILTIN_DIR}${nameOrPath}.yaml` : undefined;
  let file: string;
  if (builtin && existsSync(builtin)) file = builtin;
  else if (existsSync(nameOrPath)) file = nameOrPath;
  else {
    throw new ConfigError(
      `no such profile: not a built-in (${builtinProfileNames().join(', ')}) and no file at that path`,
      { file: nameOrPath },
    );
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the profile: ${(err as Error).message}`, { file, cause: err });
  }
  const source = file === builtin ? `builtin:${nameOrPath}` : file;
  return parseProfile(text, { source: file, label: source, ...overrides });
}

/** Parses and validates profile text; every error names the file and the key path. */
export function parseProfile(text: string, options: { source: string; label?: string; baseUrl?: string }): Profile {
  const file = options.source;
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` (line ${err.linePos[0].line})` : '';
    throw new ConfigError(`not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}${where}: ${(err as Error).message.split('\n')[0]}`, { file, cause: err });
  }
  const parsed = profileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = primaryIssue(parsed.error.issues);
    const keyPath = formatKeyPath(issue.path) ?? (issue.code === 'unrecognized_keys' ? undefined : '(top level)');
    throw new ConfigError(issueMessage(issue, profileSchema), { file, ...(keyPath ? { keyPath } : {}) });
  }
  return resolveProfile(parsed.data, { file, label: options.label ?? file, baseUrl: options.baseUrl });
}

function checkSelectors(rules: ExtractData, keyPath: string, file: string, captureType: string): void {
  const check = (sel: Selector, at: string): void => {
    if (typeof sel === 'string') {
      try {
        parseJsonPath(sel);
      } catch (err) {
        throw new ConfigError(`JSONPath "${sel}" does not parse: ${(err as Error).message}`, { file, keyPath: at, cause: err });
      }
      if (captureType === 'html') {
        throw new ConfigError('an html capture extracts with {css, attr}, not JSONPath', { file, keyPath: at });
      }
    } else if (captureType === 'json') {
      throw new ConfigError('a json capture extracts with JSONPath, not {css}', { file, keyPath: at });
    }
  };
  for (const [name, sel] of Object.entries(rules.fields)) check(sel, `${keyPath}.fields.${name}`);
  rules.media.forEach((sel, i) => check(sel, `${keyPath}.media[${i}]`));
  rules.ids.forEach((sel, i) => check(sel, `${keyPath}.ids[${i}]`));
}

function checkTemplate(template: string, known: Set<string>, keyPath: string, file: string): void {
  for (const m of template.matchAll(/\{([^{}]*)\}/g)) {
    if (!known.has(m[1]!)) {
      throw new ConfigError(`unknown placeholder {${m[1]}} (known here: ${[...known].map((k) => `{${k}}`).join(', ')})`, { file, keyPath });
    }
  }
}

function toRules(e: ExtractData): ExtractRules {
  return { fields: e.fields, media: e.media, ids: e.ids };
}

function resolveProfile(data: ProfileData, ctx: { file: string; label: string; baseUrl: string | undefined }): Profile {
  const { file } = ctx;
  const baseUrl = (ctx.baseUrl ?? data.base_url)?.replace(/\/+$/, '');
  if (!baseUrl) throw new ConfigError('no base_url: set it in the profile or pass --base-url', { file, keyPath: 'base_url' });
  let base: URL;
  try {
    base = new URL(baseUrl);
  } catch (err) {
    throw new ConfigError(`base URL "${baseUrl}" is not a URL`, { file, keyPath: 'base_url', cause: err });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ConfigError(`base URL "${baseUrl}" must be http or https`, { file, keyPath: 'base_url' });
  }

  const known = new Set(['id', 'base_url']);
  const primaryRules = toRules(data.extract);
  checkSelectors(data.extract, 'extract', file, data.captures[0]!.type);
  const names = new Set<string>();
  const captures: CaptureSpec[] = data.captures.map((c, i) => {
    const at = `captures[${i}]`;
    if (names.has(c.name)) throw new ConfigError(`capture name "${c.name}" is used twice`, { file, keyPath: `${at}.name` });
    names.add(c.name);
    checkTemplate(c.url, known, `${at}.url`, file);
    if (c.extract) checkSelectors(c.extract, `${at}.extract`, file, c.type);
    const rules = i === 0 ? mergeRules(primaryRules, c.extract) : c.extract ? toRules(c.extract) : undefined;
    for (const f of Object.keys(rules?.fields ?? {})) known.add(f);
    if (i === 0 && c.if === 'archived') {
      throw new ConfigError('the primary capture cannot depend on itself (if: archived)', { file, keyPath: `${at}.if` });
    }
    return {
      name: c.name,
      urlTemplate: c.url,
      type: c.type,
      render: c.render,
      when: c.if ?? (i === 0 ? 'always' : 'archived'),
      extract: rules,
      headers: c.headers,
    };
  });
  if (data.ids.discover) checkTemplate(data.ids.discover.url, new Set(['base_url']), 'ids.discover.url', file);
  if (data.ids.discover) {
    try {
      parseJsonPath(data.ids.discover.json);
    } catch (err) {
      throw new ConfigError(`JSONPath "${data.ids.discover.json}" does not parse`, { file, keyPath: 'ids.discover.json', cause: err });
    }
  }
  const p = data.politeness;
  return {
    name: data.name,
    description: data.description,
    source: ctx.label,
    baseUrl,
    codec: data.ids.codec,
    discover: data.ids.discover ? { urlTemplate: data.ids.discover.url, jsonPath: data.ids.discover.json } : undefined,
    captures,
    status: {
      archived: data.status.archived,
      missing: data.status.missing,
      gone: data.status.gone,
      restricted: data.status.restricted,
      missingBodies: data.status.missing_body,
    },
    politeness: {
      concurrency: p.concurrency,
      perHostConcurrency: p.per_host_concurrency,
      ratePerSec: p.rate,
      robots: p.robots,
      maxAttempts: p.max_attempts,
      timeoutMs: p.timeout_ms,
      connectTimeoutMs: p.connect_timeout_ms,
      idleTimeoutMs: p.idle_timeout_ms,
      maxBodyBytes: p.max_body_bytes,
      maxExtractBytes: p.max_extract_bytes,
      maxFieldDepth: p.max_field_depth,
      maxFieldChars: p.max_field_chars,
      maxFieldValues: p.max_field_values,
      maxHtmlDepth: p.max_html_depth,
      maxExtractMs: p.max_extract_ms,
      maxRedirects: p.max_redirects,
      totalTimeoutMs: p.total_timeout_ms,
      maxOutageMs: p.max_outage_ms,
    },
    media: { fetch: data.media.fetch, maxPerPost: data.media.max_per_post },
    scopeHosts: data.scope.hosts ?? [base.hostname],
  };
}

/** The top-level `extract` belongs to the primary capture; a primary's own block adds to it. */
function mergeRules(top: ExtractRules, own: ExtractData | undefined): ExtractRules {
  if (!own) return top;
  return { fields: { ...top.fields, ...own.fields }, media: [...top.media, ...own.media], ids: [...top.ids, ...own.ids] };
}

/** Fills `{name}` placeholders; values are URL-encoded except `base_url`. */
export function fillTemplate(template: string, values: Record<string, string | undefined>): string {
  return template.replace(/\{([^{}]*)\}/g, (_, key: string) => {
    const v = values[key];
    if (v === undefined) throw new ConfigError(`template ${template}: no value for {${key}}`);
    return key === 'base_url' ? v : encodeURIComponent(v);
  });
}
