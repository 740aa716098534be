import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../../config/errors.js';
import { formatKeyPath, issueMessage, primaryIssue } from '../../config/schema-issue.js';
import { DEFAULT_MEDIA_ITEM_SIZE, MEDIA_KINDS } from './media-urls.js';
import type { StorePolicy } from './rules.js';

/**
 * A tracker project file (YAML or JSON). Every key, its unit and default:
 *
 * ```yaml
 * name: demo-rescue            # [a-z0-9-]+, the project's name in the database and on the leaderboard
 * profile: demo                # the crawl profile nodes use (a built-in name or a path), sent with each claim
 * item_size: 1000              # optional, default 1000: IDs per item when seeding (the default of `tracker seed`)
 * lease_secs: 600              # optional, default 600: how long a claim lasts without a heartbeat; each heartbeat extends it
 * min_client_version: 0.1.0    # optional, default 0.0.0 (any): nodes older than this get HTTP 426 (an admin can raise it at run time)
 * admin_token_env: LIFEBOAT_ADMIN_TOKEN   # optional: the environment variable holding the admin token
 * rate_limit: {max: 600, window_secs: 60} # optional: requests per token (or per address) per window;
 *                              #   also per_address_max (all tokens of one address together; default max)
 *                              #   and registrations_per_hour (per address; default 20)
 * upload:                      # optional: nodes upload their WARCs through pre-signed S3 PUT URLs
 *   bucket: my-rescue          #   S3 bucket (must exist; checked when the tracker starts)
 *   prefix: rescues            #   key prefix; objects land at PREFIX/PROJECT/item-ITEMID/NAME ('' for none)
 *   endpoint: https://s3.example.org   # optional: an S3-compatible store (path-style); default: AWS
 *                              #   (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL from the environment)
 *   region: us-east-1          #   optional; default AWS_REGION / AWS_DEFAULT_REGION, or us-east-1 with an endpoint
 *   expires_secs: 3600         #   optional: how long a pre-signed URL stays valid, 1..604800 s; default 3600
 * media:                       # optional: shared media as project-wide work (issue 13)
 *   collect: true              #   default true: post items report the media URLs they find, and the tracker hands
 *                              #   out each never-seen URL once, in media items; false: nodes fetch media inline
 *   inline: []                 #   media kinds a post item still fetches itself (image, video, other); default none
 *   item_size: 100             #   URLs per media item; default 100
 *   hosts: [cdn.example.org]   #   hosts reported URLs may be on; default the profile's scope.hosts
 *   ports: [8443]              #   ports besides the scheme's default reported URLs may name; default the port of
 *                              #   the profile's base_url (as the tracker loads it: `tracker serve --base-url`), if any
 *   max_attempts: 3            #   times a media item holding a URL may fail or run out before the URL is `failed`
 *                              #   (counted project-wide; the item then finishes without it); default 3
 *   max_per_node_hour: 100000  #   never-seen URLs one node may report per hour; default 100000 (per ID it reports
 *                              #   finished, a node may also report at most the profile's media.max_per_post)
 * nodes:                       # optional (issue 21 §3): limits on volunteers nobody vetted
 *   max_leases: 4              #   live leases one node may hold (per node, not per address); default 4
 *   stall_secs: 3600           #   a lease whose heartbeats report no progress this long goes to another node (its node
 *                              #   does not get the item back while other work is there for it: rules.ts stallBarBefore); default 3600
 * follow: {every_secs: 60}     # optional (issue 14): poll the profile's ids.discover every N s (>= 1) and seed
 *                              #   the IDs above the highest held as items, as `tracker seed` would. Also
 *                              #   (issue 21): max_step (a larger jump waits for a confirming poll; default
 *                              #   10 x the recent growth per poll, at least 1000), confirm_secs (how long
 *                              #   such a jump must be seen, every poll answering at least as high, before
 *                              #   it is accepted; default 3 x every_secs, at least 60; 0: the next poll), chunk_items (items cut
 *                              #   from the frontier at a time, default 1000), recheck: {window: 1000,
 *                              #   attempts: 3, delay_secs: 60, age_secs: 600} (a missing ID within `window`
 *                              #   of the newest, or accepted by a poll less than `age_secs` ago, is asked
 *                              #   again; window 0 or age_secs 0 turns that rule off)
 * deadline: 2026-12-01T00:00:00Z   # optional (issue 14): RFC 3339; the tracker projects coverage per kind at
 *                              #   this time and hands out the most valuable work per byte first
 * order: newest                # optional (issue 14): within a kind, `newest` (highest IDs first) or `oldest`;
 *                              #   default newest with a deadline, else oldest
 * ```
 * The upload credentials are the tracker's own, from the standard AWS environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or, failing that, the AWS SDK's
 * credential chain (shared config, instance role); nodes only ever receive pre-signed URLs.
 * With `upload` set the tracker accepts `done` only after each reported WARC is in the bucket
 * with the reported size and sha256.
 *
 * Unknown keys are errors that name the file and the key.
 */
/** A project's name: the rule `serve` (this schema) and `seed`/`status` (a name from the command line) share. */
export const PROJECT_NAME = /^[a-z0-9-]+$/;
export const PROJECT_NAME_HINT = 'use lower-case letters, digits and dashes';

export const projectSchema = z.strictObject({
  name: z.string().regex(PROJECT_NAME, PROJECT_NAME_HINT),
  profile: z.string().min(1),
  item_size: z.number().int().min(1).default(1000),
  lease_secs: z.number().int().min(1).default(600),
  min_client_version: z.string().regex(/^\d+\.\d+\.\d+$/, 'use MAJOR.MINOR.PATCH').default('0.0.0'),
  admin_token_env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/).optional(),
  rate_limit: z
    .strictObject({
      max: z.number().int().min(1),
      window_secs: z.number().int().min(1),
      per_address_max: z.number().int().min(1).optional(),
      registrations_per_hour: z.number().int().min(1).optional(),
    })
    .optional(),
  upload: z
    .strictObject({
      bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name is 3-63 lower-case letters, digits, "." or "-"'),
      prefix: z
        .string()
        .max(512)
        .regex(/^[A-Za-z0-9._/-]*$/, 'use letters, digits, ".", "_", "-" and "/"')
        .refine((p) => !p.split('/').includes('..'), 'a prefix may not contain ".."'),
      endpoint: z.url({ protocol: /^https?$/ }).optional(),
      region: z.string().regex(/^[a-z0-9-]+$/).optional(),
      expires_secs: z.number().int().min(1).max(7 * 24 * 3600).optional(),
    })
    .optional(),
  media: z
    .strictObject({
      collect: z.boolean().default(true),
      inline: z.array(z.enum(MEDIA_KINDS)).default([]),
      item_size: z.number().int().min(1).max(10_000).default(DEFAULT_MEDIA_ITEM_SIZE),
      hosts: z.array(z.string().min(1)).min(1).optional(),
      ports: z.array(z.number().int().min(1).max(65_535)).optional(),
      max_attempts: z.number().int().min(1).max(1000).default(3),
      max_per_node_hour: z.number().int().min(0).default(100_000),
    })
    .default({ collect: true, inline: [], item_size: DEFAULT_MEDIA_ITEM_SIZE, max_attempts: 3, max_per_node_hour: 100_000 }),
  nodes: z
    .strictObject({
      max_leases: z.number().int().min(1).max(10_000).default(4),
      stall_secs: z.number().int().min(60).default(3600),
    })
    .default({ max_leases: 4, stall_secs: 3600 }),
  follow: z
    .strictObject({
      every_secs: z.number().min(1).max(86_400),
      max_step: z.number().int().min(1).optional(),
      confirm_secs: z.number().int().min(0).max(86_400).optional(),
      chunk_items: z.number().int().min(1).max(100_000).optional(),
      recheck: z
        .strictObject({
          window: z.number().int().min(0).optional(),
          attempts: z.number().int().min(0).max(20).optional(),
          delay_secs: z.number().min(1).max(86_400).optional(),
          age_secs: z.number().int().min(0).max(30 * 86_400).optional(),
        })
        .optional(),
    })
    .optional(),
  deadline: z.iso.datetime({ offset: true }).optional(),
  order: z.enum(['newest', 'oldest']).optional(),
});

/** The claim order within a kind: the project's `order`, else newest first under a deadline. */
export function claimOrderOf(project: Pick<ProjectConfig, 'order' | 'deadline'>): 'newest' | 'oldest' {
  return project.order ?? (project.deadline ? 'newest' : 'oldest');
}

export type ProjectConfig = z.infer<typeof projectSchema>;

/** The limits the store enforces for a project (rules.ts StorePolicy); `maxPerPost` is its profile's media.max_per_post. */
export function policyOf(project: Pick<ProjectConfig, 'media' | 'nodes'>, maxPerPost: number): StorePolicy {
  return {
    mediaMaxAttempts: project.media.max_attempts,
    maxLeasesPerNode: project.nodes.max_leases,
    stallMs: project.nodes.stall_secs * 1000,
    mediaPerId: maxPerPost,
    mediaPerNodeHour: project.media.max_per_node_hour,
  };
}

/** The project's `upload` section: where the tracker's pre-signed URLs point. */
export type ProjectUpload = NonNullable<ProjectConfig['upload']>;

/** Validates a parsed project; errors name `file` and the key path. */
export function parseProject(value: unknown, file = 'project'): ProjectConfig {
  const result = projectSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = primaryIssue(result.error.issues);
  const keyPath = formatKeyPath(issue.path);
  throw new ConfigError(issueMessage(issue, projectSchema), { file, ...(keyPath ? { keyPath } : {}) });
}

export async function loadProjectFile(file: string): Promise<ProjectConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the project file: ${(err as Error).message}`, { file, cause: err });
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`not valid YAML/JSON: ${(err as Error).message}`, { file, cause: err });
  }
  return parseProject(value, file);
}

/** Compares `MAJOR.MINOR.PATCH` versions (a pre-release suffix is ignored); NaN parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => v.split(/[-+]/)[0]!.split('.').map((p) => Number.parseInt(p, 10) || 0);
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}
