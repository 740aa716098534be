import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { InputError } from '../../config/errors.js';
import { createCodec } from '../../config/id-codec.js';
import { RangeSet } from '../../config/id-ranges.js';
import type { AddressBudget } from './address-budget.js';
import type { MediaScope } from '../store/media-urls.js';
import * as api from './api-schemas.js';
import { HISTORY_BUCKET_MS } from '../store/stats.js';
import { type ItemStore, type NodeRecord, type Refusals, type TrackerStats, parseSeedRanges } from '../store/item-store.js';
import { LeaseError, UploadUnverifiedError } from '../client/errors.js';
import type { TrackerMetrics } from './metrics.js';
import type { FollowSeeder } from './follow.js';
import { type ProjectConfig, claimOrderOf, compareVersions } from '../store/project.js';
import type { DeadlineProjection } from '../store/deadline.js';
import { type TrackerUploader, callUploadStore, checkUploads, itemKeyPrefix } from './uploader.js';

/** What the route handlers share; built once by `buildTrackerApp`. */
export interface RouteContext {
  store: ItemStore;
  project: ProjectConfig;
  now: () => number;
  leaseMs: number;
  metrics: TrackerMetrics;
  adminTokenHash: Buffer;
  stats(): Promise<TrackerStats>;
  /** Looks a node up by token hash (cached briefly; bans made here invalidate the cache). */
  authenticate(tokenHash: string): Promise<NodeRecord | undefined>;
  minClientVersion(): Promise<string>;
  invalidateCaches(): void;
  leaderboardHtml: string;
  openApi: Record<string, unknown>;
  /** Set when the project uploads through the tracker (pre-signed URLs, checked before `done`). */
  uploader: TrackerUploader | undefined;
  /** Registrations allowed per client address (issue 11 §5). */
  registrations: AddressBudget;
  /** Hosts reported media URLs may be on (the project's media.hosts or the profile's scope.hosts). */
  mediaScope: MediaScope;
  /** A project with `follow`: its live edge (frontier, held jump; issue 21 §1). */
  follow?: FollowSeeder | undefined;
}

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex');

/** Validates a body against its strict schema; a missing body counts as `{}`. Errors name the key. */
function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const at = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  const keys = issue.code === 'unrecognized_keys' ? ` (${issue.keys.join(', ')})` : '';
  throw new InputError(`${at}${issue.message}${keys}`, { code: 'E_BAD_REQUEST' });
}

function bearer(req: FastifyRequest): string | undefined {
  const m = /^Bearer\s+(\S{1,200})$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

function send(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).send({ error: code, message });
}

const iso = (ms: number) => new Date(ms).toISOString();
const ranges = (set: RangeSet) => set.toJSON();

export function registerRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { store, project, now, leaseMs, metrics } = ctx;
  const nodes = new WeakMap<FastifyRequest, NodeRecord>();
  const nodeOf = (req: FastifyRequest) => nodes.get(req)!;

  const checkVersion = async (req: FastifyRequest, reply: FastifyReply) => {
    const version = req.headers[api.VERSION_HEADER];
    const min = await ctx.minClientVersion();
    if (typeof version !== 'string' || !/^\d+\.\d+\.\d+/.test(version)) {
      return send(reply, 426, 'E_VERSION', `send your lifeboat version in the X-Lifeboat-Version header; this project needs ${min} or newer`);
    }
    if (compareVersions(version, min) < 0) {
      return send(reply, 426, 'E_VERSION', `lifeboat ${version} is older than this project's minimum ${min}; upgrade lifeboat and start the node again`);
    }
  };
  const checkNode = async (req: FastifyRequest, reply: FastifyReply) => {
    const token = bearer(req);
    if (!token) return send(reply, 401, 'E_AUTH', 'send your node token as "Authorization: Bearer TOKEN" (register first)');
    const node = await ctx.authenticate(hashToken(token));
    if (!node) return send(reply, 401, 'E_AUTH', 'unknown node token; register again');
    if (node.banned) return send(reply, 403, 'E_BANNED', `nick "${node.nick}" is banned from this project; ask the organisers why`);
    nodes.set(req, node);
  };
  const checkAdmin = async (req: FastifyRequest, reply: FastifyReply) => {
    const token = bearer(req);
    const given = createHash('sha256').update(token ?? '').digest();
    if (!token || !timingSafeEqual(given, ctx.adminTokenHash)) return send(reply, 401, 'E_AUTH', 'this route needs the admin token');
  };
  const guards = { node: [checkVersion, checkNode], version: [checkVersion], admin: [checkAdmin], none: [] } as const;
  const route = (path: string) => {
    const spec = api.ROUTES.find((r) => r.path === path);
    if (!spec) throw new Error(`route ${path} is missing from ROUTES`);
    return { method: spec.method, url: spec.path, preHandler: [...guards[spec.auth]] };
  };

  app.route({
    ...route('/api/v1/register'),
    handler: async (req, reply) => {
      const body = parse(api.registerBody, req.body);
      const { nick } = body;
      const waitMs = ctx.registrations.take(req.ip);
      if (waitMs > 0) {
        void reply.header('retry-after', String(Math.ceil(waitMs / 1000)));
        return send(reply, 429, 'E_RATE_LIMIT', `too many registrations from your address (${ctx.registrations.max} per ${Math.round(ctx.registrations.windowMs / 60_000)} min); retry in ${Math.ceil(waitMs / 1000)} s`);
      }
      const token = body.token ?? randomBytes(32).toString('base64url');
      const node = await store.registerNode({ nick, tokenHash: hashToken(token), now: now() });
      metrics.inc('registrations');
      return { node_id: node.id, nick: node.nick, token };
    },
  });

  app.route({
    ...route('/api/v1/claim'),
    handler: async (req) => {
      const { only } = parse(api.claimBody, req.body);
      const t = now();
      const claim = () => store.claim({ nodeId: nodeOf(req).id, now: t, leaseMs, mediaItemSize: project.media.item_size, order: claimOrderOf(project), ...(only ? { only } : {}) });
      let result = await claim();
      // Nothing queued but IDs wait in the follow frontier (issue 21 §1): cut one bounded chunk, claim again.
      if (result.kind !== 'lease' && only !== 'media' && ctx.follow?.hasFrontier) {
        const seeded = await ctx.follow.topUp();
        if (seeded.items > 0) {
          const expired = result.expired;
          result = await claim();
          result.expired += expired;
        }
      }
      metrics.inc('expired', result.expired);
      // A followed platform keeps publishing (issue 14): nothing left now means "ask again after the next poll".
      if (result.kind === 'done' && project.follow) {
        metrics.inc('claims_later');
        return { item: null, retry_after_secs: Math.ceil(project.follow.every_secs) };
      }
      if (result.kind === 'done') {
        metrics.inc('claims_done');
        return { item: null, done: true };
      }
      if (result.kind === 'later') {
        metrics.inc(result.capped ? 'claims_capped' : 'claims_later');
        return { item: null, retry_after_secs: Math.ceil(result.retryAfterMs / 1000) };
      }
      metrics.inc('claims_lease');
      const { lease } = result;
      return {
        item: {
          id: lease.itemId,
          kind: lease.kind,
          ranges: ranges(lease.ranges),
          ...(lease.urls ? { urls: lease.urls.map((u) => [u.seq, u.url]) } : {}),
          lease_id: lease.leaseId,
          lease_expires_at: iso(lease.leaseExpiresAt),
        },
        profile: project.profile,
        media: { collect: project.media.collect, inline: project.media.inline, hosts: ctx.mediaScope.hosts },
        lease_secs: leaseMs / 1000,
        upload: ctx.uploader ? { mode: ctx.uploader.mode } : null,
      };
    },
  });

  app.route({
    ...route('/api/v1/heartbeat'),
    handler: async (req) => {
      const body = parse(api.heartbeatBody, req.body);
      const finished = RangeSet.fromJSON(body.finished);
      if (body.media && body.media.length > 0 && !project.media.collect) {
        throw new InputError(`project ${project.name} does not collect media (media.collect: false): fetch media inline`, { code: 'E_MEDIA_OFF' });
      }
      // Checked before anything is stored: one URL off scope refuses the whole report; one naming
      // a port the project does not is left out (counted as refused, as URLs over a budget are).
      const checked = body.media ? ctx.mediaScope.checkReport(body.media) : undefined;
      const media = checked?.media;
      const result = await store.heartbeat({
        nodeId: nodeOf(req).id,
        leaseId: body.lease_id,
        finished,
        now: now(),
        leaseMs,
        ...(media ? { media } : {}),
        ...(checked?.offPort ? { mediaRefusedBefore: checked.offPort } : {}),
      });
      metrics.inc('heartbeats');
      if (media) metrics.inc('media_reported', media.length);
      const refused = result.mediaRefused + (checked?.offPort ?? 0);
      if (refused > 0) metrics.inc('media_refused', refused);
      return { lease_expires_at: iso(result.leaseExpiresAt), remaining: ranges(result.remaining), media_queued: result.mediaQueued, media_refused: refused };
    },
  });

  app.route({
    ...route('/api/v1/upload-urls'),
    handler: async (req) => {
      const body = parse(api.uploadUrlsBody, req.body);
      const uploader = ctx.uploader;
      if (!uploader) throw new InputError(`project ${project.name} has no upload section: keep the WARCs and upload them yourself`, { code: 'E_UPLOAD_OFF' });
      const lease = await store.lookupLease({ nodeId: nodeOf(req).id, leaseId: body.lease_id, now: now() });
      if (lease.state !== 'live') throw new LeaseError(`lease ${body.lease_id} is finished; its files were already accepted`);
      const puts = await callUploadStore('sign upload URLs', () => uploader.presign(body.files, itemKeyPrefix(project.name, lease.itemId)));
      metrics.inc('upload_urls', puts.length);
      return { urls: puts.map((p) => ({ name: p.name, key: p.key, url: p.url, method: p.method, headers: p.headers, expires_at: p.expiresAt })) };
    },
  });

  app.route({
    ...route('/api/v1/done'),
    handler: async (req) => {
      const body = parse(api.doneBody, req.body);
      if (ctx.uploader) {
        try {
          await checkUploads(ctx.uploader, store, { nodeId: nodeOf(req).id, leaseId: body.lease_id, now: now(), project: project.name, warcs: body.stats.warcs });
        } catch (err) {
          if (err instanceof UploadUnverifiedError) metrics.inc('done_unverified');
          throw err;
        }
      }
      const recheck = body.missing && ctx.follow ? await ctx.follow.recheckOf(RangeSet.fromJSON(body.missing)) : undefined;
      const result = await store.done({ nodeId: nodeOf(req).id, leaseId: body.lease_id, stats: body.stats, now: now(), ...(recheck ? { recheck } : {}) });
      metrics.inc(result.duplicate ? 'done_duplicate' : 'done');
      return { ok: true, duplicate: result.duplicate };
    },
  });

  for (const path of ['/api/v1/release', '/api/v1/fail'] as const) {
    app.route({
      ...route(path),
      handler: async (req) => {
        const body = path === '/api/v1/fail' ? parse(api.failBody, req.body) : { ...parse(api.releaseBody, req.body), error: undefined, media_errors: undefined, missing: undefined };
        const finished = body.finished ? RangeSet.fromJSON(body.finished) : undefined;
        const mediaErrors = body.media_errors ? new Map(body.media_errors.map(([seq, reason]) => [seq, reason])) : undefined;
        // A fail's missing IDs get the rechecks a done's get (issue 21 §1): a failed ID elsewhere in the item must not make them final.
        const recheck = body.missing && ctx.follow ? await ctx.follow.recheckOf(RangeSet.fromJSON(body.missing)) : undefined;
        const result = await store.release({ nodeId: nodeOf(req).id, leaseId: body.lease_id, finished, error: body.error, now: now(), ...(mediaErrors ? { mediaErrors } : {}), ...(recheck ? { recheck } : {}) });
        metrics.inc(path === '/api/v1/fail' ? 'fails' : 'releases');
        return { ok: true, remaining: ranges(result.remaining) };
      },
    });
  }

  app.route({ ...route('/api/v1/stats'), handler: async () => ({ ...statsJson(await ctx.stats()), ...(ctx.follow ? { follow: followJson(ctx.follow.status()) } : {}) }) });
  // The leaderboard's rate chart: bucketed history, reused for 10 s per span (a public route).
  const historyCache = new Map<number, { at: number; value: Promise<unknown> }>();
  app.route({
    ...route('/api/v1/stats/history'),
    handler: async (req) => {
      const { hours } = parse(api.historyQuery, req.query);
      const t = now();
      const hit = historyCache.get(hours);
      if (hit && t - hit.at < 10_000) return hit.value;
      const value = store.rateHistory({ now: t, sinceMs: hours * 3600_000 }).then((points) => ({
        bucket_secs: HISTORY_BUCKET_MS / 1000,
        points: points.map((p) => ({ at: iso(p.at), ids: p.ids, bytes: p.bytes, ids_per_sec: p.idsPerSec, bytes_per_sec: p.bytesPerSec })),
      }));
      value.catch(() => historyCache.delete(hours));
      historyCache.set(hours, { at: t, value });
      return value;
    },
  });
  app.route({
    ...route('/api/v1/project'),
    handler: async () => ({
      name: project.name,
      profile: project.profile,
      item_size: project.item_size,
      lease_secs: leaseMs / 1000,
      min_client_version: await ctx.minClientVersion(),
    }),
  });

  app.route({
    ...route('/api/v1/admin/seed'),
    handler: async (req) => {
      const body = parse(api.seedBody, req.body);
      const ids = parseSeedRanges(body.ranges, createCodec('integer'));
      // Only IDs the project does not hold yet: a repeated seed changes nothing (issue 10 §5).
      const result = await store.seedNew(ids, body.item_size ?? project.item_size);
      ctx.invalidateCaches();
      return result;
    },
  });
  app.route({
    ...route('/api/v1/admin/ban'),
    handler: async (req) => {
      const body = parse(api.banBody, req.body);
      const result = await store.ban({ nick: body.nick, reason: body.reason ?? '', now: now() });
      ctx.invalidateCaches();
      return { ok: true, released_items: result.releasedItems };
    },
  });
  app.route({
    ...route('/api/v1/admin/unban'),
    handler: async (req) => {
      await store.unban(parse(api.unbanBody, req.body).nick);
      ctx.invalidateCaches();
      return { ok: true };
    },
  });
  app.route({
    ...route('/api/v1/admin/min-version'),
    handler: async (req) => {
      const { version } = parse(api.minVersionBody, req.body);
      await store.setSetting('min_client_version', version);
      ctx.invalidateCaches();
      return { ok: true, min_client_version: await ctx.minClientVersion() };
    },
  });
  app.route({
    ...route('/api/v1/admin/expire'),
    handler: async (req) => {
      parse(api.emptyBody, req.body);
      const expired = await store.expireLeases(now());
      metrics.inc('expired', expired);
      return { expired };
    },
  });

  app.route({ ...route('/openapi.json'), handler: async () => ctx.openApi });
  app.route({ ...route('/'), handler: async (_req, reply) => reply.type('text/html; charset=utf-8').send(ctx.leaderboardHtml) });
  app.route({
    ...route('/metrics'),
    handler: async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(metrics.render(await ctx.stats())),
  });
}

/** The wire form of `TrackerStats` (snake_case, ISO time, progress as a 0–1 fraction). */
export function statsJson(s: TrackerStats) {
  return {
    project: s.project,
    items: s.items,
    ids: s.ids,
    progress: s.ids.total === 0 ? 0 : s.ids.done / s.ids.total,
    eta_secs: s.etaSecs,
    bytes: s.bytes,
    active_nodes: s.activeNodes,
    rate_ids_per_sec: s.rateIdsPerSec,
    rate_window_secs: s.rateWindowSecs,
    nodes: s.nodes.map((n) => ({ nick: n.nick, items: n.items, ids: n.ids, bytes: n.bytes, rate_ids_per_sec: n.rateIdsPerSec, refused: refusedJson(n.refused) })),
    refused: refusedJson(s.refused),
    media_failed: s.mediaFailed,
    generated_at: iso(s.generatedAt),
    ...(s.deadline ? { deadline: deadlineJson(s.deadline) } : {}),
  };
}

function refusedJson(r: Refusals) {
  return { media: r.media, claims: r.claims, stalled_leases: r.stalledLeases };
}

/** The follow block of /api/v1/stats (issue 21 §1): the accepted latest ID, a jump held for confirmation, IDs not yet items. */
function followJson(f: ReturnType<FollowSeeder['status']>) {
  return { highest: f.highest, held: f.held, frontier_ids: f.frontierIds };
}

/** The deadline block of /api/v1/stats: countdown and projected coverage per kind (issue 14). */
function deadlineJson(d: DeadlineProjection) {
  return {
    at: iso(d.deadline),
    seconds_left: d.secondsLeft,
    bytes_per_sec: d.bytesPerSec,
    fits: d.fits,
    kinds: d.kinds.map((k) => ({ kind: k.kind, units: k.units, expected_units: k.expectedUnits, finished: k.finished, projected: k.projected, coverage: k.coverage, bytes_per_unit: k.bytesPerUnit })),
  };
}
