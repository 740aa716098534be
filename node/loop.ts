import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, InputError } from '../config/errors.js';
import { RangeSet } from '../config/id-ranges.js';
import type { ItemKind } from '../config/media-kinds.js';
import { VERSION } from '../config/version.js';
import { acquireDirLock } from '../storage/shard/dir-lock.js';
import type { MediaUrl } from '../tracker/client/api-types.js';
import { TrackerClient, type TrackerItem } from '../tracker/client/client.js';
import { TrackerRequestError } from '../tracker/client/errors.js';
import { crawlItem, finishedIn } from './item.js';
import { mediaFinished } from './media.js';
import type { NodeOptions } from './options.js';
import { assertHttpUrl } from '../config/errors.js';

export type { NodeOptions } from './options.js';

/**
 * The volunteer node (ARCHITECTURE.md "Tracker and nodes"): register once, then claim → crawl with the standalone
 * engine → heartbeat finished sub-ranges → done (or give back what is left) → claim again.
 * Each item is crawled into its own shard directory `DIR/items/ITEM`; `DIR/node.json` keeps
 * the token and the lease in hand, so a node killed with -9 and started again continues its
 * item on the same lease (when the lease has not expired) and never redoes what is final.
 */

interface NodeState {
  tracker: string;
  nick: string;
  token: string;
  /** false while the registration with `token` is not known to have reached the tracker. */
  registered?: boolean;
  current?: {
    itemId: number;
    leaseId: string;
    ranges: [number, number][];
    profile: string;
    leaseSecs: number;
    /** Absent in node.json written before issue 13: a post item that fetched its media itself. */
    kind?: ItemKind;
    urls?: MediaUrl[];
    media?: TrackerItem['media'];
  };
}

export interface NodeResult {
  /** Items finished (done or handed back with their failures). */
  items: number;
  /** The item stopped part-way by Ctrl-C (its saved IDs are in `counts`, the rest given back). */
  stoppedItem?: number;
  counts: Record<string, number>;
  interrupted: boolean;
}

async function readState(path: string): Promise<NodeState | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as NodeState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InputError(`${path} is not valid node state (${errorMessage(err)}); move it away to register afresh`, { code: 'E_NODE_STATE', cause: err });
  }
}

async function writeState(path: string, state: NodeState): Promise<void> {
  await writeFile(`${path}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
}

export async function runNode(opts: NodeOptions): Promise<NodeResult> {
  assertHttpUrl('--tracker', opts.trackerUrl); // before anything is created
  await mkdir(join(opts.outDir, 'items'), { recursive: true });
  // One node per --out (issue 10 §2): two would share node.json's lease and the item shards.
  const lock = acquireDirLock(opts.outDir, 'node');
  try {
    return await nodeLocked(opts);
  } finally {
    lock.release();
  }
}

async function nodeLocked(opts: NodeOptions): Promise<NodeResult> {
  const log = opts.logger.child('node');
  const statePath = join(opts.outDir, 'node.json');
  let state = await readState(statePath);
  if (state && (state.tracker !== opts.trackerUrl || state.nick !== opts.nick)) {
    if (state.registered === false && !state.current) {
      // A start that never registered (a wrong tracker port, an invalid or taken nick) holds
      // nothing: no lease, no shard of anyone's. It does not lock the folder.
      log.log('info', `${statePath} is from a start that never registered (nick ${state.nick} at ${state.tracker}); starting afresh as ${opts.nick} at ${opts.trackerUrl}`);
      state = undefined;
    } else {
      throw new InputError(
        `${opts.outDir} belongs to nick ${state.nick} at ${state.tracker}: to go on with it, start the node with --tracker ${state.tracker} --nick ${state.nick}; for another nick or tracker, use another --out`,
        { code: 'E_NODE_STATE' },
      );
    }
  }
  const client =
    opts.client ??
    new TrackerClient({
      baseUrl: opts.trackerUrl,
      clientVersion: VERSION,
      ...(state ? { token: state.token } : {}),
      // Silence while the tracker is down looks like a hang: say each failed attempt.
      onRetry: (r) =>
        log.log('warn', `tracker ${opts.trackerUrl}${r.path}: ${r.problem}; attempt ${r.attempt} of ${r.maxAttempts} failed, next try in ${Math.max(1, Math.round(r.waitMs / 1000))} s`, { ...r }),
    });
  if (!state || state.registered === false) {
    // The token is chosen and saved first: a node killed before it saved the answer registers
    // again with the same token, which the tracker recognises (a nick has one owner).
    if (!state) {
      state = { tracker: opts.trackerUrl, nick: opts.nick, token: randomBytes(32).toString('base64url'), registered: false };
      await writeState(statePath, state);
    }
    let reg;
    try {
      reg = await client.register(opts.nick, { token: state.token, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      // Ctrl-C while the tracker is still unreachable: nothing was claimed, nothing to give back.
      if (opts.signal?.aborted) return { items: 0, counts: { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 }, interrupted: true };
      throw err;
    }
    state = { tracker: opts.trackerUrl, nick: opts.nick, token: reg.token };
    await writeState(statePath, state);
    log.log('info', `registered as ${reg.nick} (node ${reg.nodeId})`);
  }
  const counts: Record<string, number> = { archived: 0, missing: 0, gone: 0, restricted: 0, failed: 0 };
  let items = 0;
  let idleWaitMs = 1000;

  while (!opts.signal?.aborted && (opts.maxItems === undefined || items < opts.maxItems)) {
    let item: TrackerItem;
    if (state.current) {
      const c = state.current;
      item = {
        id: c.itemId,
        kind: c.kind ?? 'posts',
        ...(c.urls ? { urls: c.urls } : {}),
        media: c.media ?? { collect: false, inline: [] },
        leaseId: c.leaseId,
        ranges: RangeSet.fromJSON(c.ranges),
        leaseExpiresAt: new Date(0),
        leaseSecs: c.leaseSecs,
        profile: c.profile,
        upload: null,
      };
      // Still ours? A heartbeat with what the shard already finished tells (and extends the lease).
      // A post item whose media go to the tracker names no IDs here: their media are reported first, by crawlItem.
      const itemDir = join(opts.outDir, 'items', String(item.id));
      const resumed = item.kind === 'media' ? mediaFinished(itemDir, item.urls ?? []) : item.media.collect ? new RangeSet() : finishedIn(itemDir, item.ranges, { waitForMedia: true });
      try {
        await client.heartbeat(item.leaseId, resumed);
        log.log('info', `resuming item ${item.id} on lease ${item.leaseId}`);
      } catch (err) {
        if (!(err instanceof TrackerRequestError)) throw err;
        log.log('warn', `the lease on item ${item.id} is gone (${errorMessage(err)}); claiming anew`);
        delete state.current;
        await writeState(statePath, state);
        continue;
      }
    } else {
      const capped = await opts.caps?.beforeClaim();
      if (capped) {
        log.log('info', `${capped}; not claiming more work`);
        break;
      }
      let answer;
      try {
        answer = await client.tryClaim({ ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.only ? { only: opts.only } : {}) });
      } catch (err) {
        if (opts.signal?.aborted) break;
        if (err instanceof TrackerRequestError) throw err;
        log.log('warn', `tracker unreachable: ${errorMessage(err)}; retrying in ${Math.round(idleWaitMs / 1000)} s`);
        await sleep(idleWaitMs, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
        idleWaitMs = Math.min(idleWaitMs * 2, 60_000);
        continue;
      }
      idleWaitMs = 1000;
      if (answer.kind === 'done') {
        log.log('info', 'the tracker has no work left');
        break;
      }
      if (answer.kind === 'later') {
        if (opts.exitWhenDone) break;
        log.log('info', `the tracker says come back in ${answer.retryAfterSecs} s`);
        await sleep(answer.retryAfterSecs * 1000, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
        continue;
      }
      item = answer.item;
      state.current = {
        itemId: item.id,
        leaseId: item.leaseId,
        ranges: item.ranges.toJSON(),
        profile: item.profile,
        leaseSecs: item.leaseSecs,
        kind: item.kind,
        ...(item.urls ? { urls: item.urls } : {}),
        media: item.media,
      };
      await writeState(statePath, state);
      const what = item.kind === 'media' ? `${item.urls?.length ?? 0} media URLs` : item.ranges.format();
      log.log('info', `claimed ${item.kind === 'media' ? 'media ' : ''}item ${item.id}: ${what} (lease ${item.leaseSecs} s)`);
    }

    const result = await crawlItem(item, opts, client, log);
    // What the item's shard holds counts in the summary, also for an item stopped half-way
    // (Ctrl-C, --max-disk): those IDs are saved. A media item's URLs are not post IDs: they count
    // apart (media_archived, media_failed, …).
    for (const [k, v] of Object.entries(result.counts)) {
      const key = item.kind === 'media' ? `media_${k}` : k;
      counts[key] = (counts[key] ?? 0) + v;
    }
    if (result.interrupted && result.diskFull) {
      // At --max-disk mid-item: the rest goes back; the next claim check frees room or stops.
      await client.release(item.leaseId, result.finished).catch((err: unknown) => log.log('warn', `could not release item ${item.id} (${errorMessage(err)}); its lease will expire`));
      log.log('info', `--max-disk reached during item ${item.id}: ${result.finished.size} IDs final, the rest given back`);
      delete state.current;
      await writeState(statePath, state);
      continue;
    }
    if (result.interrupted) {
      // Ctrl-C: report what is final and give the rest back, so nobody waits for the lease.
      try {
        await client.release(item.leaseId, result.finished);
        delete state.current;
        await writeState(statePath, state);
        log.log('info', `released item ${item.id}; ${result.finished.size} IDs were finished`);
      } catch (err) {
        log.log('warn', `could not release item ${item.id} (${errorMessage(err)}); its lease will expire and the remainder return to the queue`);
      }
      return { items, counts, interrupted: true, stoppedItem: item.id };
    }
    items++;
    delete state.current;
    await writeState(statePath, state);
  }
  return { items, counts, interrupted: !!opts.signal?.aborted };
}
