import { existsSync, readFileSync } from 'node:fs';
import { BUILTIN_DIR, builtinProfileNames } from './builtin-profiles.js';
import { compile as compileCss } from 'css-select';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import parseJsonPath from 'jsonpath-rfc9535/parser';
import { ConfigError } from './errors.js';
import type { CodecSpec } from './id-codec.js';
import { formatKeyPath, issueMessage, primaryIssue } from './schema-issue.js';
import { profileSchema, type ExtractData, type ProfileData, type Selector } from './profile-schema.js';
import { resolveStatus, type StatusConfig } from './profile-status.js';

export type { Selector } from './profile-schema.js';
export type { StatusConfig, StatusRule, RuleVerdict } from './profile-status.js';
export type RequisiteKind = 'stylesheets' | 'scripts' | 'images' | 'fonts';
export const REQUISITE_KINDS: readonly RequisiteKind[] = ['stylesheets', 'scripts', 'images', 'fonts'];

export interface ExtractRules {
  fields: Record<string, Selector>;
  media: Selector[];
  ids: Selector[];
}

/** When a capture runs: always, when the primary was archived, or also only when a JSONPath on the primary selects a value that is set. */
export type CaptureCondition = 'always' | 'archived' | { json: string };

export interface CaptureSpec {
  name: string;
  /** The first of `urlTemplates`. */
  urlTemplate: string;
  /** URL alternatives, tried in order until one answers with an archived status (one for most captures). */
  urlTemplates: string[];
  type: 'json' | 'html' | 'binary';
  render: 'http' | 'browser';
  when: CaptureCondition;
  extract: ExtractRules | undefined;
  headers: Record<string, string>;
  /** Page requisites an HTML capture fetches like media; empty for none. */
  requisites: RequisiteKind[];
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
  /** Where the highest ID is (`ids.discover`): one entry or several; the highest any gives counts. */
  discover: { urlTemplate: string; jsonPath: string }[] | undefined;
  captures: CaptureSpec[];
  status: StatusConfig;
  politeness: Politeness;
  media: { fetch: boolean; maxPerPost: number };
  scopeHosts: string[];
}

export { builtinProfileNames } from './builtin-profiles.js';

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

function checkJsonPath(path: string, file: string, keyPath: string): void {
  try {
    parseJsonPath(path);
  } catch (err) {
    throw new ConfigError(`JSONPath "${path}" does not parse: ${(err as Error).message}`, { file, keyPath, cause: err });
  }
}

function checkCss(css: string, file: string, keyPath: string): void {
  try {
    compileCss(css);
  } catch (err) {
    throw new ConfigError(`CSS selector "${css}" does not parse: ${(err as Error).message}`, { file, keyPath, cause: err });
  }
}

function checkSelectors(rules: ExtractData, keyPath: string, file: string, captureType: string): void {
  const check = (sel: Selector, at: string): void => {
    if (typeof sel === 'string') {
      checkJsonPath(sel, file, at);
      if (captureType === 'html') {
        throw new ConfigError('an html capture extracts with {css, attr}, not JSONPath', { file, keyPath: at });
      }
      return;
    }
    if (sel.json === undefined) {
      if (captureType === 'json') throw new ConfigError('a json capture extracts with JSONPath, not {css} (HTML inside a JSON field: {json, css, attr})', { file, keyPath: at });
      if (sel.css === undefined) throw new ConfigError('a selector object needs css (HTML) or json (JSON)', { file, keyPath: at });
      const stray = sel.markdown !== undefined ? 'markdown' : sel.fill !== undefined ? 'fill' : undefined;
      if (stray) throw new ConfigError(`${stray} applies to a JSON field: add json`, { file, keyPath: `${at}.${stray}` });
      checkCss(sel.css, file, `${at}.css`);
      return;
    }
    if (captureType === 'html') throw new ConfigError('an html capture extracts with {css, attr}, not {json}', { file, keyPath: `${at}.json` });
    checkJsonPath(sel.json, file, `${at}.json`);
    const modes = (['css', 'markdown', 'fill'] as const).filter((k) => sel[k] !== undefined);
    if (modes.length > 1) throw new ConfigError(`use one of css, markdown, fill on a JSON field, not ${modes.join(' and ')}`, { file, keyPath: `${at}.${modes[1]}` });
    if (sel.css !== undefined) checkCss(sel.css, file, `${at}.css`);
  };
  for (const [name, sel] of Object.entries(rules.fields)) check(sel, `${keyPath}.fields.${name}`);
  rules.media.forEach((sel, i) => check(sel, `${keyPath}.media[${i}]`));
  rules.ids.forEach((sel, i) => check(sel, `${keyPath}.ids[${i}]`));
}

function checkTemplate(template: string, known: Set<string>, keyPath: string, file: string): void {
  for (const m of template.matchAll(/\{([^{}]*)\}/g)) {
    const [name, mode] = m[1]!.split(':', 2) as [string, string | undefined];
    if (!known.has(name)) {
      throw new ConfigError(`unknown placeholder {${m[1]}} (known here: ${[...known].map((k) => `{${k}}`).join(', ')})`, { file, keyPath });
    }
    if (mode !== undefined && mode !== 'path' && mode !== 'url') {
      throw new ConfigError(`placeholder {${m[1]}}: the forms are {${name}} (escaped), {${name}:path} (a path, slashes kept) and {${name}:url} (a whole URL)`, { file, keyPath });
    }
    if (mode === 'url' && m.index !== 0) throw new ConfigError(`placeholder {${m[1]}} is a whole URL: it must begin the template`, { file, keyPath });
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
    const templates = typeof c.url === 'string' ? [c.url] : c.url;
    templates.forEach((t, j) => checkTemplate(t, known, typeof c.url === 'string' ? `${at}.url` : `${at}.url[${j}]`, file));
    if (c.extract) checkSelectors(c.extract, `${at}.extract`, file, c.type);
    const rules = i === 0 ? mergeRules(primaryRules, c.extract) : c.extract ? toRules(c.extract) : undefined;
    for (const f of Object.keys(rules?.fields ?? {})) known.add(f);
    if (i === 0 && c.if !== undefined && c.if !== 'always') {
      throw new ConfigError(`the primary capture cannot depend on itself (if: ${typeof c.if === 'string' ? c.if : `{json: "${c.if.json}"}`})`, { file, keyPath: `${at}.if` });
    }
    if (typeof c.if === 'object') checkJsonPath(c.if.json, file, `${at}.if.json`);
    if (c.requisites !== false && (c.type !== 'html' || c.render !== 'http')) {
      throw new ConfigError('requisites are for html captures over http (a browser capture records what the page loads)', { file, keyPath: `${at}.requisites` });
    }
    return {
      name: c.name,
      urlTemplate: templates[0]!,
      urlTemplates: templates,
      type: c.type,
      render: c.render,
      when: c.if ?? (i === 0 ? 'always' : 'archived'),
      extract: rules,
      headers: c.headers,
      requisites: c.requisites === true ? [...REQUISITE_KINDS] : c.requisites === false ? [] : [...new Set(c.requisites)],
    };
  });
  const discovers = data.ids.discover === undefined ? undefined : Array.isArray(data.ids.discover) ? data.ids.discover : [data.ids.discover];
  discovers?.forEach((d, j) => {
    const at = Array.isArray(data.ids.discover) ? `ids.discover[${j}]` : 'ids.discover';
    checkTemplate(d.url, new Set(['base_url']), `${at}.url`, file);
    checkJsonPath(d.json, file, `${at}.json`);
  });
  const p = data.politeness;
  return {
    name: data.name,
    description: data.description,
    source: ctx.label,
    baseUrl,
    codec: data.ids.codec,
    discover: discovers?.map((d) => ({ urlTemplate: d.url, jsonPath: d.json })),
    captures,
    status: resolveStatus(data.status, file),
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

/**
 * Fills `{name}` placeholders; values are URL-encoded except `base_url`. `{name:path}` keeps a
 * path-shaped value's slashes (and its valid %XX escapes), encoding the rest as a path segment
 * would (`?` and `#` too: the value is a path). `{name:url}` (only at the start of a template)
 * takes a whole URL — scheme, host, path, query — as a URL: a relative one (`/?attachment_id=134`)
 * resolves against `base_url`; it must end up http(s). Where it points is the scope guard's to
 * judge, as for any URL. Throws (a ConfigError naming the placeholder) when a value is missing or
 * is not a URL.
 */
export function fillTemplate(template: string, values: Record<string, string | undefined>): string {
  return template.replace(/\{([^{}]*)\}/g, (_, placeholder: string) => {
    const [key, mode] = placeholder.split(':', 2) as [string, string | undefined];
    const v = values[key];
    if (v === undefined) throw new ConfigError(`template ${template}: no value for {${placeholder}}`);
    if (key === 'base_url' && mode !== 'url') return v;
    if (mode === 'url') return wholeUrl(v, values.base_url, placeholder);
    return mode === 'path' ? encodePath(v) : encodeURIComponent(v);
  });
}

function wholeUrl(value: string, base: string | undefined, placeholder: string): string {
  let u: URL;
  try {
    u = new URL(value.trim(), base === undefined ? undefined : `${base}/`);
  } catch {
    throw new ConfigError(`{${placeholder}}: ${JSON.stringify(value.slice(0, 200))} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`{${placeholder}}: ${JSON.stringify(value.slice(0, 200))} is not an http(s) URL`);
  u.hash = '';
  return u.href;
}

/** A path with its slashes and valid %XX escapes kept; everything a path may not hold escaped (`?` and `#` too). */
export function encodePath(value: string): string {
  return value.replace(/%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]+/gu, (m) => (/^%[0-9A-Fa-f]{2}$/.test(m) ? m : encodeURIComponent(m)));
}
