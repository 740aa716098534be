import { z } from 'zod';
import { codecSpecSchema } from './id-codec.js';

/**
 * The profile format (a contract: README "Profiles"). Keys are snake_case in YAML/JSON; every object
 * is strict, so a misspelt key is an error that names its path.
 */
const jsonPath = z.string().min(1).describe('a JSONPath (RFC 9535) expression');
/**
 * A selector: a JSONPath string, or an object. `{css, attr}` on an HTML capture; on a JSON capture
 * `{json}` picks a string field and then `css` + `attr` read it as HTML, `markdown` takes the image
 * and/or link URLs of it as markdown, or `fill` sets fixed placeholders of a URL template it holds
 * (Discourse `avatar_template`: `{json: "$.avatar_template", fill: {size: 240}}`). Which keys may
 * go together is checked in config/profile.ts, with the key path.
 */
const selectorObject = z.strictObject({
  css: z.string().min(1).optional(),
  attr: z.string().min(1).default('src'),
  json: jsonPath.optional(),
  markdown: z.enum(['images', 'links', 'all']).optional(),
  fill: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'fill names are [A-Za-z_][A-Za-z0-9_]*'), z.union([z.string(), z.number()])).optional(),
});
const selector = z.union([jsonPath, selectorObject]);

export const extractSchema = z.strictObject({
  fields: z.record(z.string().regex(/^[a-z_][a-z0-9_]*$/, 'field names are [a-z_][a-z0-9_]*'), selector).default({}),
  media: z.array(selector).default([]),
  ids: z.array(selector).default([]),
});

export const captureSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9_-]+$/, 'capture names are [a-z0-9_-]+'),
  /** One URL template, or alternatives tried in order until one answers with an archived status. */
  url: z.union([z.string().min(1), z.array(z.string().min(1)).min(1, 'a list of URL alternatives needs at least one')], { error: 'url is a URL template or a list of them (alternatives)' }),
  type: z.enum(['json', 'html', 'binary']).default('json'),
  render: z.enum(['http', 'browser']).default('http'),
  /**
   * When to fetch: `always`; `archived` (only when the primary was archived); or `{json: PATH}`:
   * only when the primary was archived and PATH, on its response, selects a value that is not
   * null, false, 0 or "".
   */
  if: z.union([z.strictObject({ json: jsonPath }), z.enum(['always', 'archived'], { error: 'if is always, archived or {json: "$.path"}' })]).optional(),
  extract: extractSchema.optional(),
  headers: z.record(z.string(), z.string()).default({}),
  /**
   * An HTML capture's page requisites to fetch like media (wget --page-requisites): `true` for
   * all, or a list of kinds. Only those on the profile's scope hosts; stylesheets' own url()
   * and @import references too.
   */
  requisites: z.union([z.boolean(), z.array(z.enum(['stylesheets', 'scripts', 'images', 'fonts'])).min(1)]).default(false),
});

const statusName = z.enum(['archived', 'missing', 'gone', 'restricted', 'failed', 'retry']);
const httpCode = z.number().int().min(100).max(599);

/**
 * A status rule: when the primary's HTTP status is `code` (one or a list; any when left out) and
 * the body matches — `json` selects something (`equals` a value or one of a list; or `exists`) and/or
 * `body` (a regular expression) matches the decoded body — the ID's status is `then`. `retry` means
 * "not now" (a rate limit in a 200 or 400 body): fetched again with backoff, `failed` when attempts run out.
 */
export const statusRuleSchema = z.strictObject({
  code: z.union([httpCode, z.array(httpCode).min(1)]).optional(),
  json: jsonPath.optional(),
  equals: z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).min(1)]).optional(),
  exists: z.boolean().optional(),
  body: z.string().min(1).optional(),
  then: statusName,
});

const discoverEntry = z.strictObject({ url: z.string().min(1), json: jsonPath });

const statusList = z.array(z.number().int().min(100).max(599));

export const profileSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]+$/, 'profile names are [a-z0-9-]+'),
  description: z.string().optional(),
  base_url: z.url().optional(),
  ids: z
    .strictObject({
      codec: codecSpecSchema.default('integer'),
      /** Where the platform's highest ID is: one `{url, json}` or several (the highest any gives counts). */
      discover: z.union([discoverEntry, z.array(discoverEntry).min(1, 'a list of discovers needs at least one')]).optional(),
    })
    .default({ codec: 'integer' }),
  captures: z.array(captureSchema).min(1, 'a profile needs at least one capture'),
  extract: extractSchema.default({ fields: {}, media: [], ids: [] }),
  status: z
    .strictObject({
      archived: statusList.default([200]),
      missing: statusList.default([404]),
      gone: statusList.default([410]),
      restricted: statusList.default([401, 403, 451]),
      /** Bodies (trimmed) of a primary 2xx response that mean "missing", e.g. `null` for Hacker News. */
      missing_body: z.array(z.string()).default([]),
      /** Tried in order before the lists above; the first that matches decides. */
      rules: z.array(statusRuleSchema).default([]),
    })
    .default({ archived: [200], missing: [404], gone: [410], restricted: [401, 403, 451], missing_body: [], rules: [] }),
  politeness: z
    .strictObject({
      concurrency: z.number().int().min(1).max(1024).default(32),
      per_host_concurrency: z.number().int().min(1).max(1024).default(16),
      /** Requests per second per host (token bucket refill rate). */
      rate: z.number().positive().default(200),
      robots: z.enum(['obey', 'ignore']).default('obey'),
      max_attempts: z.number().int().min(1).max(100).default(8),
      timeout_ms: z.number().int().min(100).default(30_000),
      connect_timeout_ms: z.number().int().min(100).default(10_000),
      idle_timeout_ms: z.number().int().min(100).default(30_000),
      max_body_bytes: z.number().int().min(1024).default(1024 ** 3),
      max_extract_bytes: z.number().int().min(1024).default(16 * 1024 ** 2),
      /** Bounds on what extraction stores per post (issue 11): nesting, characters per string, values in all. */
      max_field_depth: z.number().int().min(1).max(256).default(32),
      max_field_chars: z.number().int().min(16).default(64 * 1024),
      max_field_values: z.number().int().min(1).default(10_000),
      /** HTML nested deeper than this is parsed only up to there (browsers cap trees at 512 levels). */
      max_html_depth: z.number().int().min(16).max(4096).default(512),
      /** Wall-clock budget of one capture's HTML extraction; what was parsed by then is used. */
      max_extract_ms: z.number().int().min(10).default(10_000),
      max_redirects: z.number().int().min(0).max(20).default(5),
      /** Upper bound on one fetch from connect to the last body byte (a body trickling under the idle timeout). */
      total_timeout_ms: z.number().int().min(100).default(600_000),
      /** How long a host may refuse connections before retries start to count (an outage is waited out). */
      max_outage_ms: z.number().int().min(0).default(300_000),
    })
    .prefault({}),
  media: z
    .strictObject({
      fetch: z.boolean().default(true),
      max_per_post: z.number().int().min(0).default(100),
    })
    .prefault({}),
  scope: z.strictObject({ hosts: z.array(z.string().min(1)).optional() }).prefault({}),
});

export type ProfileInput = z.input<typeof profileSchema>;
export type ProfileData = z.output<typeof profileSchema>;
export type ExtractData = z.output<typeof extractSchema>;
export type CaptureData = z.output<typeof captureSchema>;
export type Selector = z.output<typeof selector>;
export type StatusRuleData = z.output<typeof statusRuleSchema>;
