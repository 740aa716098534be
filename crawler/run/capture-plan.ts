/**
 * A profile's captures for one ID (ARCHITECTURE.md "One ID"), HTTP or browser, in one order for both:
 * fetch → extract → record. The primary capture decides the ID's status, here and nowhere else;
 * later captures run while it is archived (or always, as the profile says); templates take fields
 * extracted by earlier captures. Returns the ID's outcome for the ShardRecorder to make final; it
 * never commits. The pieces: which URLs a capture tries and whether it runs (capture-alternatives.ts),
 * fetch → extract → record (capture-fetch.ts), what an answer means (capture-status.ts).
 */
import { errorMessage } from '../../config/errors.js';
import type { IdCodec } from '../../config/id-codec.js';
import type { Logger } from '../../config/logger.js';
import type { Profile } from '../../config/profile.js';
import type { CaptureRow, IdStatus } from '../../storage/shard/shard-db.js';
import type { IdFinal, ShardRecorder } from '../../storage/shard/shard-recorder.js';
import type { CrawlStats } from '../fetch/crawl-stats.js';
import type { FetchStack } from './fetch-stack.js';
import { lazyJson, NOT_JSON, skippedBecause, tryAlternatives } from './capture-alternatives.js';
import { CaptureFetch } from './capture-fetch.js';
import { CaptureStatus, incompleteBecause, statusOf, type CaptureResult, type TriedUrl } from './capture-status.js';

export type { TriedUrl } from './capture-status.js';

export interface CapturePlanOptions {
  profile: Profile;
  codec: IdCodec;
  stack: FetchStack;
  recorder: ShardRecorder;
  stats: CrawlStats;
  logger: Logger;
  signal: AbortSignal;
  /** Whether a related ID is one this run was asked for (the frontier's ranges). */
  inScope: (id: number) => boolean;
  /** Called with what happened to each ID, capture by capture (`lifeboat probe`). */
  onTrace?: (trace: IdTrace) => void;
}

/** A capture of one ID as it went: fetched (which URL answered, its status and bytes) or skipped and why. */
export interface CaptureTrace {
  name: string;
  url: string | null;
  http: number | null;
  bytes: number | null;
  /** Why it was not fetched (its condition, a URL refused by scope or robots.txt); absent when it was. */
  skipped?: string;
  /** Why it failed (a secondary's failure makes the ID incomplete); absent when it answered. */
  error?: string;
  /** Every alternative tried, in order, when the capture has more than one URL. */
  tried?: TriedUrl[];
}

/** What happened to one ID (`lifeboat probe` prints it). */
export interface IdTrace {
  id: string;
  status: IdStatus;
  /** Why the ID has its status: the rule or list that decided, which alternative answered. */
  why: string;
  captures: CaptureTrace[];
  fields: Record<string, unknown>;
  media: string[];
  /** Extraction cuts, URLs dropped, incomplete captures. */
  notes: string[];
  /** Why the ID is incomplete (ids.incomplete); absent when it is not. */
  incomplete?: string;
}

function fieldText(v: unknown): string | undefined {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

export class CapturePlan {
  readonly #o: CapturePlanOptions;
  readonly #log: Logger;
  readonly #status: CaptureStatus;
  readonly #fetch: CaptureFetch;

  constructor(o: CapturePlanOptions) {
    this.#o = o;
    this.#log = o.logger.child('crawl');
    this.#status = new CaptureStatus(o.profile.status);
    this.#fetch = new CaptureFetch(o, this.#status);
  }

  /** Runs the profile's captures for `id`; undefined when stopped before the primary answered. */
  async run(id: number): Promise<IdFinal | undefined> {
    const { profile, codec, signal } = this.#o;
    if (signal.aborted) return undefined;
    const values: Record<string, string | undefined> = { id: codec.encode(id), base_url: profile.baseUrl };
    const fields: Record<string, unknown> = {};
    const rows: CaptureRow[] = [];
    const media: string[] = [];
    const related: string[] = [];
    const requisites: string[] = [];
    const notes: string[] = [];
    const missing: string[] = [];
    const traces: CaptureTrace[] = [];
    let status: IdStatus | undefined;
    let why = '';
    let httpStatus: number | null = null;
    let attempts = 0;
    let lastError: string | null = null;
    let primaryDoc: () => unknown = () => NOT_JSON;
    // An ID an earlier run left incomplete: its primary is fetched again (the status may have
    // changed), the secondaries it already holds are not; their fields come from the shard.
    const earlier = this.#o.recorder.earlierCaptures(id);
    try {
      for (const [i, spec] of profile.captures.entries()) {
        if (i > 0) {
          const skipped = skippedBecause(spec, status!, primaryDoc) ?? (status === 'archived' && earlier?.names.has(spec.name) ? 'archived by an earlier run' : undefined);
          if (skipped) {
            traces.push({ name: spec.name, url: null, http: null, bytes: null, skipped });
            continue;
          }
        }
        const one = await tryAlternatives(spec, values, i === 0 ? (url) => this.#fetch.primary(spec, url, id) : (url) => this.#fetch.capture(spec, url, id, false), this.#status);
        attempts += one.attempts;
        rows.push(...one.rows);
        traces.push(this.#trace(one, spec.name));
        if (i === 0) {
          // The ID's status is what CaptureStatus.decide made of the primary's answer that counts: decided nowhere else.
          status = statusOf(one);
          httpStatus = one.http ?? null;
          why = this.#status.why(spec, one);
          if (status === 'failed') {
            const d = one.decision;
            lastError = `${one.error ?? (d?.kind === 'final' && d.reason ? d.reason : `HTTP ${one.status}`)}${one.stopped ? ` (${one.stopped})` : ''}`;
            break;
          }
          if (earlier && status === 'archived') {
            // Fields of the captures kept from the earlier run; this run's own answers override them.
            for (const [k, v] of Object.entries(earlier.fields)) if (!(k in fields)) fields[k] = v;
            for (const [k, v] of Object.entries(earlier.fields)) if (values[k] === undefined) values[k] = fieldText(v);
          }
          primaryDoc = lazyJson(one.text);
        } else {
          const lost = incompleteBecause(spec, one);
          if (lost) missing.push(lost);
          else if (one.refused) notes.push(`${spec.name}: ${one.url ?? 'URL'} not fetched (${one.error})`);
          if (one.stopped) notes.push(`${spec.name}: redirect not followed (${one.stopped})`);
        }
        if (one.problem) notes.push(`${spec.name}: ${one.problem}`);
        if (i === 0 || statusOf(one) === 'archived') {
          Object.assign(fields, one.fields);
          for (const [k, v] of Object.entries(one.fields)) values[k] = fieldText(v);
          media.push(...one.media);
          requisites.push(...(one.requisites ?? []));
          related.push(...one.ids);
        }
      }
    } catch (err) {
      if (signal.aborted) return undefined;
      throw err;
    }
    if (signal.aborted && status === undefined) return undefined;
    const finalStatus: IdStatus = status ?? 'failed';
    const archived = finalStatus === 'archived';
    // Serialised here, not in the commit: a value that cannot be stored costs its own fields, never the batch.
    let fieldsJson: string | undefined;
    if (archived && Object.keys(fields).length > 0) {
      try {
        fieldsJson = JSON.stringify(fields);
      } catch (err) {
        notes.push(`fields not stored: ${errorMessage(err)}`);
      }
    }
    // A capture the profile asked for that could not be had: the ID is final in status, not done (retried by the next run).
    const incomplete = finalStatus !== 'failed' && missing.length > 0 ? missing.join('; ').slice(0, 2000) : undefined;
    if (incomplete) this.#log.log('warn', `ID ${codec.encode(id)} ${finalStatus} but incomplete: ${incomplete}`, { id });
    // A final ID keeps what extraction had to leave out or cut as its note (ids.last_error); else why it is incomplete.
    if (notes.length > 0 && finalStatus !== 'failed') {
      lastError = `extraction: ${notes.join('; ')}`.slice(0, 2000);
      this.#o.stats.extractionNote();
      this.#log.log('warn', `ID ${codec.encode(id)} ${finalStatus}, but ${lastError}`, { id });
    } else if (incomplete) lastError = incomplete;
    const mediaOut = archived ? [...(profile.media.fetch ? media.slice(0, profile.media.maxPerPost) : []), ...requisites] : [];
    this.#o.onTrace?.({
      id: codec.encode(id),
      status: finalStatus,
      why: why || (lastError ?? ''),
      captures: traces,
      fields: archived ? fields : {},
      media: mediaOut,
      notes: [...notes, ...missing.map((m) => `incomplete: ${m}`)],
      ...(incomplete ? { incomplete } : {}),
    });
    return {
      id,
      status: finalStatus,
      httpStatus,
      attempts,
      lastError,
      ...(incomplete ? { incomplete } : {}),
      ...(fieldsJson !== undefined ? { fieldsJson } : {}),
      rows,
      relatedIds: archived ? this.#relatedIds(id, related) : [],
      // Requisites were asked for by name (a capture's `requisites`): queued even when media.fetch is off.
      media: mediaOut,
    };
  }

  /** Fetches, records and makes final one media URL (and what a stylesheet refers to); nothing when stopped. */
  fetchMedia(url: string, postId: number | null): Promise<void> {
    return this.#fetch.fetchMedia(url, postId);
  }

  #trace(one: CaptureResult, name: string): CaptureTrace {
    return {
      name,
      url: one.url ?? null,
      http: one.http ?? null,
      bytes: one.http != null ? (one.bytes ?? null) : null,
      ...(one.refused ? { skipped: `refused: ${one.error}` } : one.error ? { error: one.unbuilt ? `URL not built: ${one.error}` : one.error } : {}),
      ...(one.tried && one.tried.length > 1 ? { tried: one.tried } : {}),
    };
  }

  #relatedIds(id: number, refs: string[]): number[] {
    const out: number[] = [];
    for (const ref of refs) {
      try {
        const rid = this.#o.codec.decode(ref);
        if (rid !== id && this.#o.inScope(rid)) out.push(rid);
      } catch {
        // not an ID in this codec: ignore
      }
    }
    return out;
  }
}
