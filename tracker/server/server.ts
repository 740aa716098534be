import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { ConfigError, InputError } from '../../config/errors.js';
import { AddressBudget } from './address-budget.js';
import { MediaScope, mediaScopeOf } from '../store/media-urls.js';
import { policyOf } from '../store/project.js';
import { BannedError, LeaseError, NickTakenError, UploadStoreError, UploadUnverifiedError } from '../client/errors.js';
import { EVENT_RETENTION_MS, type ItemStore, type NodeRecord, type TrackerStats } from '../store/item-store.js';
import { TrackerMetrics } from './metrics.js';
import { projectDeadline } from '../store/deadline.js';
import { FollowSeeder } from './follow.js';
import { openItemStore } from '../store/open-store.js';
import { buildOpenApi } from './openapi.js';
import { type ProjectConfig, claimOrderOf, compareVersions, loadProjectFile } from '../store/project.js';
import { hashToken, registerRoutes } from './routes.js';
import { type TrackerUploader, uploaderFromProject } from './uploader.js';

export const TRACKER_API_VERSION = '1.0.0';

export interface TrackerAppOptions {
  /** The item store; injected and owned by the caller (the app does not close it). */
  store: ItemStore;
  project: ProjectConfig;
  /** Bearer token for the /api/v1/admin/* routes. */
  adminToken: string;
  /** Clock in ms since the epoch; default `Date.now`. */
  now?: () => number;
  /** Lease length; each heartbeat extends a lease by this much. */
  leaseMs: number;
  /**
   * Requests allowed per token (or per address without one) per window. Every address also has a
   * budget for all its requests together, whatever tokens they carry (`perAddressMax`, default
   * `max`; the admin token is exempt), and at most `registrationsPerHour` registrations (default 20).
   */
  rateLimit: { max: number; timeWindowMs: number; perAddressMax?: number; registrationsPerHour?: number };
  /** Largest accepted request body; default 64 KiB (bigger bodies get 413). */
  bodyLimitBytes?: number;
  /** How long /api/v1/stats and /metrics reuse a stats snapshot; default 2000 ms (0: never). */
  statsCacheMs?: number;
  /**
   * How long a node token lookup is reused; default 5000 ms (0: never). A ban made through
   * another tracker process takes effect here within this time.
   */
  authCacheMs?: number;
  /** Window of the "live rate" (IDs/s); default 300 000 ms: ten 30-s heartbeats per node, so the rate is the nodes' own within ~10% (issue 10 §6). */
  rateWindowMs?: number;
  /** How often overdue leases are expired in the background; default leaseMs/4 within 1–30 s (0: off). */
  expireEveryMs?: number;
  /**
   * How often this process records that the tracker is alive; default 5000 ms (0: off). When
   * the app starts and the last record is older than twice that, the tracker was away: live
   * leases get that time back (their nodes could not heartbeat meanwhile), instead of expiring
   * and sending finished-but-unreported work to another node.
   */
  aliveEveryMs?: number;
  /** fastify/pino logger options; default off. */
  logger?: FastifyServerOptions['logger'];
  /**
   * Uploads through the tracker: claims announce it, /api/v1/upload-urls signs PUT URLs, and
   * `done` is accepted only once the reported WARCs are in the store. Owned by the caller.
   * Required when the project has an `upload` section; default none (nodes keep their WARCs).
   */
  uploader?: TrackerUploader;
  /** Hosts reported media URLs may be on; default the project's media.hosts, else the scope.hosts of its profile. */
  mediaHosts?: string[];
  /**
   * The platform's base URL as the tracker knows it (`tracker serve --base-url`): its port is one
   * reported media URLs may name (with media.ports); default the profile's base_url.
   */
  baseUrl?: string;
  /**
   * The platform's highest ID now (the profile's ids.discover): required by a project with
   * `follow`, whose new IDs the app then seeds every `follow.every_secs` (issue 14).
   */
  discoverMaxId?: () => Promise<number>;
}

const registeredRoutes = new WeakMap<FastifyInstance, string[]>();

/** Every `METHOD /path` the app serves (HEAD excluded), for checking the OpenAPI description. */
export function listRoutes(app: FastifyInstance): string[] {
  return [...(registeredRoutes.get(app) ?? [])];
}

/** HTTP status for an error thrown by a handler or the store. */
function describeError(err: unknown): { status: number; code: string; message: string } {
  if (err instanceof LeaseError) return { status: 409, code: err.code, message: err.message };
  if (err instanceof BannedError) return { status: 403, code: err.code, message: err.message };
  if (err instanceof NickTakenError) return { status: 409, code: err.code, message: err.message };
  if (err instanceof InputError) return { status: 400, code: err.code, message: err.message };
  if (err instanceof UploadUnverifiedError) return { status: 422, code: err.code, message: err.message };
  if (err instanceof UploadStoreError) return { status: 503, code: err.code, message: err.message };
  const e = err as { statusCode?: number; code?: string; message?: string };
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const message = e.statusCode === 413 ? 'request body too large' : e.message ?? 'bad request';
    return { status: e.statusCode, code: e.code ?? 'E_BAD_REQUEST', message };
  }
  return { status: 500, code: 'E_INTERNAL', message: 'internal tracker error; try again later' };
}

/**
 * Builds the tracker's fastify app (not listening). The caller owns `store`; closing the app
 * stops the background expiry timer only.
 */
export async function buildTrackerApp(options: TrackerAppOptions): Promise<FastifyInstance> {
  const {
    store,
    project,
    adminToken,
    now = Date.now,
    leaseMs,
    rateLimit: limit,
    bodyLimitBytes = 64 * 1024,
    statsCacheMs = 2000,
    authCacheMs = 5000,
    rateWindowMs = 300_000,
    expireEveryMs = Math.min(30_000, Math.max(1000, leaseMs / 4)),
    aliveEveryMs = 5000,
    logger = false,
    uploader,
  } = options;
  if (project.upload && !uploader) throw new ConfigError(`project ${project.name} has an upload section: pass an uploader (serveTracker builds one)`);
  if (adminToken.length < 16) throw new ConfigError('the admin token must be at least 16 characters');
  if (project.follow && !options.discoverMaxId) throw new ConfigError(`project ${project.name} has a follow section: pass discoverMaxId (serveTracker builds one)`);
  if (rateWindowMs > EVENT_RETENTION_MS) throw new ConfigError(`rateWindowMs must be at most ${EVENT_RETENTION_MS} ms (the event retention)`);

  const app = Fastify({ logger, bodyLimit: bodyLimitBytes });
  const metrics = new TrackerMetrics();

  const startedAt = now();
  let statsCache: { at: number; value: Promise<TrackerStats> } | undefined;
  let versionCache: { at: number; value: string } | undefined;
  const stats = () => {
    const t = Date.now();
    if (!statsCache || t - statsCache.at >= statsCacheMs) {
      const value = withDeadline(store, project, now(), rateWindowMs, startedAt);
      value.catch(() => (statsCache = undefined));
      statsCache = { at: t, value };
    }
    return statsCache.value;
  };
  const authCache = new Map<string, { at: number; node: NodeRecord }>();
  const authenticate = async (tokenHash: string) => {
    const t = Date.now();
    const hit = authCache.get(tokenHash);
    if (hit && t - hit.at < authCacheMs) return hit.node;
    const node = await store.authenticate(tokenHash);
    if (node && authCacheMs > 0) {
      if (authCache.size >= 100_000) authCache.clear();
      authCache.set(tokenHash, { at: t, node });
    }
    return node;
  };
  const minClientVersion = async () => {
    const t = Date.now();
    if (!versionCache || t - versionCache.at >= 5000) {
      const raised = await store.getSetting('min_client_version');
      const value = raised && compareVersions(raised, project.min_client_version) > 0 ? raised : project.min_client_version;
      versionCache = { at: t, value };
    }
    return versionCache.value;
  };

  const adminTokenDigest = createHash('sha256').update(adminToken).digest();
  const isAdmin = (token: string) => timingSafeEqual(createHash('sha256').update(token).digest(), adminTokenDigest);
  await app.register(rateLimit, {
    global: true,
    max: limit.max,
    timeWindow: limit.timeWindowMs,
    // Per token only for tokens the tracker knows: made-up tokens share their address's budget,
    // so a flood with a fresh random token per request is limited like one without a token.
    keyGenerator: async (req) => {
      const token = /^Bearer\s+(\S{1,200})$/i.exec(req.headers.authorization ?? '')?.[1];
      if (token) {
        const hash = hashToken(token);
        if (isAdmin(token)) return 't:admin';
        if (await authenticate(hash).catch(() => undefined)) return `t:${hash}`;
      }
      return `ip:${req.ip}`;
    },
    errorResponseBuilder: (_req, context) =>
      Object.assign(new Error(`rate limit of ${context.max} requests per ${context.after} reached; retry in ${Math.ceil(context.ttl / 1000)} s`), {
        statusCode: 429,
        code: 'E_RATE_LIMIT',
      }),
  });

  // One budget per address over all its tokens (issue 11 §5): five tokens from one address share it.
  const addressBudget = new AddressBudget({ max: limit.perAddressMax ?? limit.max, windowMs: limit.timeWindowMs });
  app.addHook('onRequest', async (req, reply) => {
    const token = /^Bearer\s+(\S{1,200})$/i.exec(req.headers.authorization ?? '')?.[1];
    if (token && isAdmin(token)) return;
    const waitMs = addressBudget.take(req.ip);
    if (waitMs === 0) return;
    const secs = Math.ceil(waitMs / 1000);
    return reply
      .status(429)
      .header('retry-after', String(secs))
      .send({ error: 'E_RATE_LIMIT', message: `rate limit of ${addressBudget.max} requests per ${limit.timeWindowMs / 1000} s for your address (all its tokens together) reached; retry in ${secs} s` });
  });

  app.setErrorHandler((err, req, reply) => {
    const { status, code, message } = describeError(err);
    if (status >= 500) req.log.error({ err }, 'tracker request failed');
    void reply.status(status).send({ error: code, message });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: 'E_NOT_FOUND', message: `no route ${req.method} ${req.url}; see /openapi.json` });
  });

  const routes: string[] = [];
  registeredRoutes.set(app, routes);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${r.url}`);
  });
  // The project's limits (issue 21): media per URL, per ID and per node, leases per node, stalls.
  const scope = mediaScopeOf(project, options.baseUrl);
  store.setPolicy(policyOf(project, scope.maxPerPost));
  const followLog = app.log.child({ component: 'follow' });
  const seeder =
    project.follow && options.discoverMaxId
      ? new FollowSeeder({
          store,
          discover: options.discoverMaxId,
          itemSize: project.item_size,
          everyMs: project.follow.every_secs * 1000,
          maxStep: project.follow.max_step,
          ...(project.follow.confirm_secs !== undefined ? { confirmMs: project.follow.confirm_secs * 1000 } : {}),
          ...(project.follow.chunk_items ? { chunkItems: project.follow.chunk_items } : {}),
          order: claimOrderOf(project),
          ...(project.follow.recheck
            ? {
                recheck: {
                  ...(project.follow.recheck.window !== undefined ? { window: project.follow.recheck.window } : {}),
                  ...(project.follow.recheck.attempts !== undefined ? { attempts: project.follow.recheck.attempts } : {}),
                  ...(project.follow.recheck.delay_secs !== undefined ? { delayMs: project.follow.recheck.delay_secs * 1000 } : {}),
                  ...(project.follow.recheck.age_secs !== undefined ? { ageMs: project.follow.recheck.age_secs * 1000 } : {}),
                },
              }
            : {}),
          log: { info: (msg, fields) => followLog.info(fields ?? {}, msg), warn: (msg, fields) => followLog.warn(fields ?? {}, msg) },
          now,
        })
      : undefined;
  registerRoutes(app, {
    store,
    project,
    follow: seeder,
    now,
    leaseMs,
    metrics,
    adminTokenHash: createHash('sha256').update(adminToken).digest(),
    stats,
    authenticate,
    minClientVersion,
    invalidateCaches: () => {
      authCache.clear();
      statsCache = undefined;
      versionCache = undefined;
    },
    leaderboardHtml: readFileSync(new URL('../public/index.html', import.meta.url), 'utf8'),
    openApi: buildOpenApi({ title: `lifeboat tracker: ${project.name}`, version: TRACKER_API_VERSION }),
    uploader,
    registrations: new AddressBudget({ max: limit.registrationsPerHour ?? 20, windowMs: 3_600_000, now }),
    mediaScope: new MediaScope(options.mediaHosts ?? scope.hosts, scope.ports),
  });

  if (aliveEveryMs > 0) {
    const restored = await restoreLeasesAfterDowntime(store, now(), aliveEveryMs);
    if (restored) app.log.info(restored, 'the tracker was away: live leases extended by its downtime');
    const markAlive = (): Promise<void> => store.setSetting(ALIVE_KEY, String(now()));
    const timer = setInterval(() => {
      markAlive().catch((err: unknown) => app.log.warn({ err }, 'recording that the tracker is alive failed'));
    }, aliveEveryMs);
    timer.unref();
    // A clean stop records its exact time, so the next start knows how long the tracker was away.
    app.addHook('onClose', async () => {
      clearInterval(timer);
      await markAlive().catch(() => undefined);
    });
  }

  if (seeder) {
    seeder.start();
    app.addHook('onClose', async () => seeder.stop());
  }

  if (expireEveryMs > 0) {
    const timer = setInterval(() => {
      store.expireLeases(now()).then(
        (n) => metrics.inc('expired', n),
        (err: unknown) => app.log.warn({ err }, 'expiring leases failed'),
      );
    }, expireEveryMs);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }
  return app;
}

const ALIVE_KEY = 'alive_at';

/** The store's stats plus, for a project with a deadline, the projection at the deadline (issue 14). */
async function withDeadline(store: ItemStore, project: ProjectConfig, now: number, windowMs: number, startedAt: number): Promise<TrackerStats> {
  const stats = await store.stats({ now, windowMs });
  if (!project.deadline) return stats;
  // The byte rate over the window, or over the time this process has been up when that is shorter
  // (a window reaching back before the start would count time in which nothing could be reported).
  const work = await store.workProgress({ now, windowMs: Math.max(1000, Math.min(windowMs, now - startedAt)) });
  return { ...stats, deadline: projectDeadline({ deadline: Date.parse(project.deadline), now, ...work }) };
}


/**
 * At start-up: if the tracker's last sign of life (any process of it: the setting is shared) is
 * older than twice the marking interval, extend the leases that were live then by the gap.
 * Returns what it did, or undefined when the tracker was not away (or never ran before).
 */
export async function restoreLeasesAfterDowntime(store: ItemStore, now: number, aliveEveryMs: number): Promise<{ downtimeMs: number; leases: number } | undefined> {
  const last = Number(await store.getSetting(ALIVE_KEY));
  let result: { downtimeMs: number; leases: number } | undefined;
  if (Number.isFinite(last) && last > 0 && now - last > 2 * aliveEveryMs) {
    const downtimeMs = now - last;
    result = { downtimeMs, leases: await store.extendLeases({ since: last, byMs: downtimeMs }) };
  }
  await store.setSetting(ALIVE_KEY, String(now));
  return result;
}

export interface ServeTrackerOptions {
  /** Path of the project file (YAML or JSON; see tracker/store/project.ts). */
  projectFile: string;
  /** `sqlite:PATH` (default `sqlite:tracker.sqlite`) or `postgres://…[?schema=NAME]`. */
  db?: string;
  port?: number;
  host?: string;
  /** Where the admin token (and, with an `upload` section, the AWS_* settings) are read from; default `process.env`. */
  env?: Record<string, string | undefined>;
  logger?: FastifyServerOptions['logger'];
  /** Builds the discover call of a profile (by name or path), for a project with `follow`. */
  discoverFor?: (profile: string) => () => Promise<number>;
  /** The platform's base URL as the organiser gives it (`--base-url`): follow polls and the media ports use it. */
  baseUrl?: string;
}

export interface RunningTracker {
  url: string;
  app: FastifyInstance;
  store: ItemStore;
  /** Stops listening, then closes the store (and the upload store's client). */
  close(): Promise<void>;
}

/** `lifeboat tracker serve`: loads the project, opens the store, listens. */
export async function serveTracker(options: ServeTrackerOptions): Promise<RunningTracker> {
  const { projectFile, db = 'sqlite:tracker.sqlite', port = 8070, host = '127.0.0.1', env = process.env, logger = { level: 'info' } } = options;
  const project = await loadProjectFile(projectFile);
  const tokenEnv = project.admin_token_env ?? 'LIFEBOAT_ADMIN_TOKEN';
  const adminToken = env[tokenEnv];
  if (!adminToken) throw new ConfigError(`set the admin token in the ${tokenEnv} environment variable (16+ characters)`, { file: projectFile, keyPath: 'admin_token_env' });
  const upload = project.upload ? uploaderFromProject(project.upload, env, projectFile) : undefined;
  let store: ItemStore | undefined;
  try {
    await upload?.uploader.checkBucket(upload.endpoint);
    store = await openItemStore({ db, project: project.name });
    const app = await buildTrackerApp({
      store,
      project,
      adminToken,
      leaseMs: project.lease_secs * 1000,
      rateLimit: {
        max: project.rate_limit?.max ?? 600,
        timeWindowMs: (project.rate_limit?.window_secs ?? 60) * 1000,
        perAddressMax: project.rate_limit?.per_address_max,
        registrationsPerHour: project.rate_limit?.registrations_per_hour,
      },
      logger,
      ...(options.baseUrl ? { baseUrl: options.baseUrl } : {}),
      ...(upload ? { uploader: upload.uploader } : {}),
      ...(project.follow && options.discoverFor ? { discoverMaxId: options.discoverFor(project.profile) } : {}),
    });
    const opened = store;
    const url = await app.listen({ port, host });
    return {
      url,
      app,
      store,
      close: async () => {
        await app.close();
        await opened.close();
        upload?.s3Client.destroy();
      },
    };
  } catch (err) {
    await store?.close();
    upload?.s3Client.destroy();
    throw err;
  }
}
