import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, LifeboatError } from '../config/errors.js';
import type { Logger } from '../config/logger.js';
import { UploadError } from '../storage/upload/errors.js';
import { mapLimit } from '../storage/upload/pacing.js';
import { uploadWithPresignedUrl } from '../storage/upload/presigned.js';
import type { TrackerClient, TrackerItem } from '../tracker/client/client.js';
import { TrackerRequestError, TrackerUnavailableError } from '../tracker/client/errors.js';
import type { RangeSet } from '../config/id-ranges.js';
import type { DoneStats, WarcReport } from '../tracker/client/api-types.js';
import { manifestPath as manifestPathOf, warcPath } from '../storage/shard/layout.js';
import { backoffMs, isRetryableStatus } from '../config/retry.js';

export interface UploadItemOptions {
  /** Asks for the URLs; the node never holds storage credentials. */
  client: Pick<TrackerClient, 'uploadUrls'>;
  leaseId: string;
  /** The item's shard directory: `warcs/NAME` and `shard.json`. */
  dir: string;
  /** The closed WARCs from shard.json (name, size, sha256). */
  warcs: readonly WarcReport[];
  /** Files sent at once; default 2. */
  concurrency?: number;
  signal?: AbortSignal;
}

/**
 * Uploads an item's closed WARCs and its shard.json through pre-signed PUT URLs from the
 * tracker (before the node sends `done`). A URL that expired before its file's turn (403) is
 * asked for again once. Throws the first `UploadError` (it names the file); nothing is deleted.
 */
export async function uploadItemFiles(options: UploadItemOptions): Promise<{ files: number; bytes: number }> {
  const { client, leaseId, dir, warcs, concurrency = 2, signal } = options;
  const manifestPath = manifestPathOf(dir);
  const manifest = await readFile(manifestPath);
  const files = [
    ...warcs.map((w) => ({ name: w.name, size: w.size, sha256: w.sha256, path: warcPath(dir, w.name) })),
    { name: 'shard.json', size: manifest.length, sha256: createHash('sha256').update(manifest).digest('hex'), path: manifestPath },
  ];
  const announce = (list: typeof files) => list.map(({ name, size, sha256 }) => ({ name, size, sha256 }));
  const urls = new Map((await client.uploadUrls(leaseId, announce(files))).map((u) => [u.name, u]));
  const results = await mapLimit(files, concurrency, async (file) => {
    const put = async (fresh: boolean) => {
      const u = fresh ? (await client.uploadUrls(leaseId, announce([file])))[0] : urls.get(file.name);
      if (!u) throw new UploadError(`${file.name}: the tracker sent no upload URL for it`, { code: 'E_UPLOAD_HTTP', file: file.name });
      return uploadWithPresignedUrl({ url: u.url, headers: u.headers, file: file.path, sha256: file.sha256, ...(signal ? { signal } : {}) });
    };
    try {
      await put(false);
    } catch (err) {
      if (!(err instanceof UploadError && err.code === 'E_UPLOAD_AUTH') || signal?.aborted) throw err;
      await put(true);
    }
  });
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return { files: files.length, bytes: files.reduce((n, f) => n + f.size, 0) };
}

/**
 * Sends `done` for a finished item, uploading its files first when the claim said
 * `upload: s3-presigned` — or when the tracker refuses `done` with E_UPLOAD_UNVERIFIED (an item
 * resumed after a restart, a damaged object): at most `maxUploads` upload rounds. Errors other
 * than that refusal are thrown as they are; the lease is then kept (nothing is released), so a
 * restarted node resumes the item and uploads again.
 */
export async function uploadThenDone(options: {
  client: Pick<TrackerClient, 'uploadUrls' | 'done'>;
  item: Pick<TrackerItem, 'id' | 'leaseId' | 'upload'>;
  dir: string;
  stats: DoneStats;
  /** IDs of the item that answered `missing` (the tracker may ask again for those near the live edge; issue 21). */
  missing?: RangeSet;
  log: Logger;
  maxUploads?: number;
  signal?: AbortSignal;
}): Promise<{ duplicate: boolean; uploads: number }> {
  const { client, item, dir, stats, log, maxUploads = 2, signal } = options;
  let upload = item.upload?.mode === 's3-presigned';
  let uploads = 0;
  for (;;) {
    if (upload) {
      uploads++;
      try {
        const sent = await uploadItemFiles({ client, leaseId: item.leaseId, dir, warcs: stats.warcs, ...(signal ? { signal } : {}) });
        log.log('info', `item ${item.id}: uploaded ${sent.files} files (${sent.bytes} bytes) through the tracker's pre-signed URLs`);
      } catch (err) {
        if (!signal?.aborted) throw err;
        throw new LifeboatError(`interrupted while uploading item ${item.id}; its lease is kept: start the node again to finish the upload`, {
          code: 'E_NODE_INTERRUPTED',
          policy: 'stop',
          cause: err,
        });
      }
    }
    try {
      const { duplicate } = await client.done(item.leaseId, stats, options.missing ? { missing: options.missing } : {});
      return { duplicate, uploads };
    } catch (err) {
      if (!(err instanceof TrackerRequestError && err.code === 'E_UPLOAD_UNVERIFIED') || uploads >= maxUploads) throw err;
      log.log('warn', `the tracker has not got item ${item.id}'s WARCs yet (${errorMessage(err)}); uploading them`);
      upload = true;
    }
  }
}

/**
 * Trouble that passes: the tracker or the storage away or overloaded, bytes garbled on the way.
 * Not: refused keys, a stale lease, a file that changed on disk, a bad request.
 */
export function isTransientUploadError(err: unknown): boolean {
  if (err instanceof TrackerUnavailableError) return true;
  if (err instanceof TrackerRequestError) return isRetryableStatus(err.status);
  if (err instanceof UploadError) {
    return err.code === 'E_UPLOAD_UNREACHABLE' || err.code === 'E_UPLOAD_CHECKSUM' || (err.code === 'E_UPLOAD_HTTP' && (err.status === undefined || isRetryableStatus(err.status)));
  }
  return false;
}

/**
 * uploadThenDone until it succeeds, for a node that should keep going through an outage of the
 * tracker or the storage: after transient trouble it waits (doubling from `baseWaitMs` up to
 * `maxWaitMs`) and tries again. It heartbeats all along, uploads and waits alike, so the lease
 * outlives a long upload or an outage. Returns `lease-lost` when the tracker refuses the lease
 * (another node has the item now); throws what is not transient, and an E_NODE_INTERRUPTED error
 * when `signal` fires (the lease is kept).
 */
export async function uploadThenDoneWithRetry(options: Parameters<typeof uploadThenDone>[0] & {
  client: Pick<TrackerClient, 'uploadUrls' | 'done' | 'heartbeat'>;
  finished: RangeSet;
  heartbeatMs: number;
  baseWaitMs?: number;
  maxWaitMs?: number;
}): Promise<'done' | 'lease-lost'> {
  const { client, item, log, signal, finished, heartbeatMs, baseWaitMs = 15_000, maxWaitMs = 600_000 } = options;
  let leaseLost = false;
  let beating = Promise.resolve();
  const timer = setInterval(() => {
    beating = beating.then(() =>
      client.heartbeat(item.leaseId, finished).then(
        () => undefined,
        (err: unknown) => {
          // The tracker itself may be what is away: its restart gives live leases their time back.
          if (err instanceof TrackerRequestError && err.status === 409) leaseLost = true;
        },
      ),
    );
  }, heartbeatMs);
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await uploadThenDone(options);
        return 'done';
      } catch (err) {
        if ((err instanceof TrackerRequestError && err.status === 409) || leaseLost) {
          log.log('warn', `the tracker no longer holds item ${item.id} for this node (${errorMessage(err)}); leaving it`);
          return 'lease-lost';
        }
        if (!isTransientUploadError(err) || signal?.aborted) throw err;
        const waitMs = backoffMs(attempt, { baseMs: baseWaitMs, maxMs: maxWaitMs, jitter: 'none' });
        log.log('warn', `item ${item.id}: ${errorMessage(err)}; keeping the lease and trying again in ${Math.round(waitMs / 1000)} s`, { attempt });
        await sleep(waitMs, undefined, signal ? { signal } : undefined).catch(() => undefined);
        if (signal?.aborted) {
          throw new LifeboatError(`interrupted while waiting to upload item ${item.id}; its lease is kept: start the node again to finish it`, {
            code: 'E_NODE_INTERRUPTED',
            policy: 'stop',
          });
        }
        if (leaseLost) {
          log.log('warn', `the lease on item ${item.id} is gone; leaving it`);
          return 'lease-lost';
        }
      }
    }
  } finally {
    clearInterval(timer);
    await beating;
  }
}
