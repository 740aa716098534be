/**
 * A profile's captures for one ID (ARCHITECTURE.md "One ID"), HTTP or browser, in one order for both:
 * fetch → extract → record. The primary capture decides the ID's status; later captures run
 * while it is archived (or always, as the profile says); templates take fields extracted by
 * earlier captures. Returns the ID's outcome for the ShardRecorder to make final; it never
 * commits. It owns what it fetched: spooled bodies are released here once recorded.
 */
import { LifeboatError, ScopeError, StorageError, errorMessage } from '../../config/errors.js';
import type { IdCodec } from '../../config/id-codec.js';
import type { Logger } from '../../config/logger.js';
import { fillTemplate, type CaptureSpec, type Profile, type StatusConfig } from '../../config/profile.js';
import type { Capture } from '../../storage/warc/capture.js';
import type { CaptureRow, IdStatus } from '../../storage/shard/shard-db.js';
import type { IdFinal, MediaFinal, ShardRecorder } from '../../storage/shard/shard-recorder.js';
import type { CrawlStats } from '../fetch/crawl-stats.js';
import { extract, resolveUrls, type Extracted } from '../extract/extract.js';
import { extractLimits } from '../extract/extract-bounds.js';
import type { FetchStack } from './fetch-stack.js';
import { attemptsOf } from '../fetch/fetcher.js';
import { releaseBody } from '../fetch/http-capture.js';
import { Requisites } from '../extract/requisites.js';
import { parseRetryAfter } from '../../config/retry.js';
import { decideStatus, fetchWithStatusRules, RateLimitGate, type StatusDecision } from './status-rules.js';
import { jsonPathQuery } from '../extract/json-path.js';
import { jsonNesting, MAX_JSON_PARSE_DEPTH } from '../extract/extract-bounds.js';

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

/** One URL alternative of a capture as it was tried. */
export interface TriedUrl {
  url: string;
  /** The HTTP status of its last hop; null when nothing answered. */
  http: number | null;
  /** What that answer means (the status lists; the primary's also the status rules), or `error` when nothing usable came back. */
  outcome: IdStatus | 'error';
  error?: string;
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

/** One capture of an ID: what was fetched, extracted and recorded. */
interface CaptureResult {
  rows: CaptureRow[];
  attempts: number;
  status: number;
  error?: string;
  /** The fetch was refused by the scope guard or robots.txt (nothing sent). */
  refused?: boolean;
  /** The URL template could not be filled in (a field it needs is missing or not a URL). */
  unbuilt?: boolean;
  stopped?: string;
  fields: Record<string, unknown>;
  media: string[];
  ids: string[];
  text: string | undefined;
  /** What extraction could not do or had to cut. */
  problem?: string;
  /** In-scope page requisites (profile `requisites`), queued like media. */
  requisites?: string[];
  /** What the answer means (crawler/run/status-rules.ts), set by #decide: the one place that decides. */
  decision?: StatusDecision;
  /** A "retry later" answer's Retry-After, when it had one. */
  retryAfterMs?: number;
  /** The URL fetched (of the alternative that counts), when one was built. */
  url?: string;
  /** Body bytes of the answer that counts. */
  bytes?: number;
  /** Which alternative counts (0-based), its HTTP status (null when nothing answered), and all that were tried. */
  alternative?: number;
  http?: number | null;
  tried?: TriedUrl[];
}

/** A capture that recorded nothing (its fetch failed or its URL could not be filled in). */
function nothing(): CaptureResult {
  return { rows: [], attempts: 0, status: 0, fields: {}, media: [], ids: [], text: undefined };
}

function fieldText(v: unknown): string | undefined {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function acceptFor(type: CaptureSpec['type']): string {
  return type === 'json' ? 'application/json' : type === 'html' ? 'text/html,*/*;q=0.8' : '*/*';
}

/** Among alternatives none of which was archived, the answer that counts: failed (not known: tried again) over restricted over gone over missing. */
const STRENGTH: Record<IdStatus, number> = { archived: 5, failed: 4, restricted: 3, gone: 2, missing: 1 };

function statusOf(one: CaptureResult): IdStatus {
  return one.decision?.kind === 'final' ? one.decision.status : 'failed';
}

/** A value a capture condition (`if: {json}`) counts as set. */
function isSet(v: unknown): boolean {
  return v !== null && v !== undefined && v !== false && v !== 0 && v !== '';
}

const NOT_JSON = Symbol('not JSON');

/** The primary's body as JSON for `if: {json}`; NOT_JSON when it is not (or too deep to parse). */
function parseJsonBounded(text: string | undefined): unknown {
  if (text === undefined || jsonNesting(text, MAX_JSON_PARSE_DEPTH) > MAX_JSON_PARSE_DEPTH) return NOT_JSON;
  try {
    return JSON.parse(text);
  } catch {
    return NOT_JSON;
  }
}

export class CapturePlan {
  readonly #o: CapturePlanOptions;
  readonly #limits;
  readonly #log: Logger;
  /** A "retry later" answer (status rules) holds back every primary of this part for a while. */
  readonly #gate = new RateLimitGate();
  readonly #requisites: Requisites;
  /** The status lists without the rules: what a secondary capture's answer means. */
  readonly #secondaryStatus: StatusConfig;

  constructor(o: CapturePlanOptions) {
    this.#o = o;
    this.#limits = extractLimits(o.profile);
    this.#log = o.logger.child('crawl');
    this.#requisites = new Requisites(o.profile);
    this.#secondaryStatus = { ...o.profile.status, rules: [], missingBodies: [] };
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
          const skipped = this.#skipped(spec, status!, primaryDoc) ?? (status === 'archived' && earlier?.names.has(spec.name) ? 'archived by an earlier run' : undefined);
          if (skipped) {
            traces.push({ name: spec.name, url: null, http: null, bytes: null, skipped });
            continue;
          }
        }
        const one = i === 0 ? await this.#primary(spec, values, id) : await this.#alternatives(spec, values, (url) => this.#fetchCapture(spec, url, id, false));
        attempts += one.attempts;
        rows.push(...one.rows);
        traces.push(this.#trace(one, spec.name));
        if (i === 0) {
          // The ID's status is what #decide made of the primary's answer that counts: decided nowhere else.
          status = statusOf(one);
          httpStatus = one.http ?? null;
          why = this.#why(spec, one);
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
          const text = one.text;
          let parsed: unknown;
          let done = false;
          primaryDoc = () => {
            if (!done) {
              done = true;
              parsed = parseJsonBounded(text);
            }
            return parsed;
          };
        } else {
          const lost = this.#incomplete(spec, one);
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

  /** Why a secondary capture is not fetched (its `if`), or undefined when it is. */
  #skipped(spec: CaptureSpec, status: IdStatus, primaryDoc: () => unknown): string | undefined {
    const when = spec.when;
    if (when === 'always') return undefined;
    const label = typeof when === 'string' ? when : `{json: "${when.json}"}`;
    if (status !== 'archived') return `if: ${label}, and the primary is ${status}`;
    if (when === 'archived') return undefined;
    const doc = primaryDoc();
    let selected: unknown[] = [];
    try {
      if (doc !== NOT_JSON) selected = jsonPathQuery(doc, when.json, 1000);
    } catch {
      selected = [];
    }
    if (selected.some(isSet)) return undefined;
    const what = selected.length === 0 ? (doc === NOT_JSON ? 'nothing (the primary is not JSON)' : 'nothing') : selected.slice(0, 3).map((v) => JSON.stringify(v)).join(', ');
    return `if: ${label} selects ${what}`;
  }

  /** Why a secondary capture's answer leaves the ID incomplete; undefined when it does not. */
  #incomplete(spec: CaptureSpec, one: CaptureResult): string | undefined {
    if (one.refused) return undefined; // out of scope or disallowed by robots.txt: never to be fetched; a note
    if (one.unbuilt) return `capture "${spec.name}": URL not built: ${one.error}`;
    if (one.error) return `capture "${spec.name}": ${one.error}`;
    // A definite answer — archived, or a status the lists call missing, gone or restricted — is complete.
    if (statusOf(one) !== 'failed') return undefined;
    return `capture "${spec.name}": ${one.url} answered HTTP ${one.status}`;
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

  /** The reason for the ID's status in words: the rule or list that decided, which alternative answered. */
  #why(spec: CaptureSpec, one: CaptureResult): string {
    const d = one.decision;
    const status = statusOf(one);
    const cfg = this.#o.profile.status;
    let why: string;
    if (one.error) why = one.unbuilt ? `URL not built: ${one.error}` : one.error;
    else if (d?.kind === 'final' && d.rule) why = `HTTP ${one.status} matched ${d.rule}${d.reason ? `: ${d.reason}` : ''}`;
    else if (d?.kind === 'final' && d.reason) why = d.reason;
    else if (status === 'missing' && !cfg.missing.includes(one.status)) why = `HTTP ${one.status} with a body listed in status.missing_body`;
    else why = `HTTP ${one.status} is in status.${status}`;
    const n = spec.urlTemplates.length;
    if (n > 1 && one.alternative !== undefined) {
      const at = `alternative ${one.alternative + 1} of ${n} (${one.url ?? spec.urlTemplates[one.alternative]})`;
      why += status === 'archived' ? `; ${at} answered` : `; none archived, the strongest answer was ${at}`;
    }
    return why;
  }

  /**
   * The one place an answer's meaning is decided: a failed fetch is `failed`; otherwise the
   * profile's status rules and lists (the primary) or the lists alone (a secondary capture).
   */
  #decide(one: Pick<CaptureResult, 'error' | 'status' | 'text'>, primary: boolean): StatusDecision {
    if (one.error) return { kind: 'final', status: 'failed', reason: one.error };
    return decideStatus(primary ? this.#o.profile.status : this.#secondaryStatus, { code: one.status, text: one.text });
  }

  /**
   * Tries a capture's URL alternatives in order: the first answer decided `archived` counts;
   * when none is, the strongest (failed, restricted, gone, missing; the first of equals). Every
   * alternative's response is recorded (it is what the platform answered) and counts in rows and attempts.
   */
  async #alternatives(spec: CaptureSpec, values: Record<string, string | undefined>, fetchAt: (url: string) => Promise<CaptureResult>): Promise<CaptureResult> {
    const tried: TriedUrl[] = [];
    const rows: CaptureRow[] = [];
    let attempts = 0;
    let best: CaptureResult | undefined;
    for (const [j, template] of spec.urlTemplates.entries()) {
      let url: string | undefined;
      let why = '';
      try {
        url = fillTemplate(template, values);
      } catch (err) {
        why = errorMessage(err);
      }
      let one: CaptureResult;
      if (url !== undefined) one = { ...(await fetchAt(url)), url, alternative: j };
      else {
        const unbuilt = { ...nothing(), error: why, unbuilt: true, alternative: j };
        one = { ...unbuilt, decision: this.#decide(unbuilt, false) };
      }
      attempts += one.attempts;
      rows.push(...one.rows);
      tried.push({ url: one.url ?? template, http: one.error ? null : one.status || null, outcome: one.error ? 'error' : statusOf(one), ...(one.error ? { error: one.error } : {}) });
      if (statusOf(one) === 'archived') {
        best = one;
        break;
      }
      if (!best || STRENGTH[statusOf(one)] > STRENGTH[statusOf(best)]) best = one;
    }
    return { ...best!, rows, attempts, tried, http: tried[best!.alternative!]!.http };
  }

  /** Fetches one URL of a capture (HTTP or browser) and decides what its answer means. */
  async #fetchCapture(spec: CaptureSpec, url: string, id: number, primary: boolean): Promise<CaptureResult> {
    const one = spec.render === 'browser' && this.#o.stack.browserFetcher ? await this.#browserCapture(spec, url, id) : await this.#httpCapture(spec, url, id, primary);
    return { ...one, url, decision: one.decision ?? this.#decide(one, primary) };
  }

  /** Fetches and records one media URL; undefined when stopped. */
  async fetchMedia(url: string, postId: number | null): Promise<MediaFinal | undefined> {
    const { stack, stats, signal } = this.#o;
    if (signal.aborted) return undefined;
    let done: MediaFinal;
    let references: string[] = [];
    try {
      const outcome = await stack.fetcher.fetch(url);
      references = await this.#requisites.ofStylesheet(outcome.answer); // read before #record releases the body
      const { rows } = await this.#record(outcome.captures, 'media', postId);
      stats.media('done');
      done = { url, state: 'done', rows, attempts: outcome.attempts, httpStatus: outcome.status, lastError: outcome.stopped ?? null };
    } catch (err) {
      if (signal.aborted) return undefined;
      if (err instanceof StorageError) throw err;
      const state = err instanceof ScopeError ? 'skipped' : 'failed';
      stats.media(state);
      return { url, state, rows: [], attempts: attemptsOf(err), lastError: errorMessage(err) };
    }
    if (references.length > 0) await this.#fetchReferenced(references, postId);
    return done;
  }

  /** What a fetched stylesheet refers to (page requisites): queued in the shard, once per shard, and fetched now. */
  async #fetchReferenced(urls: string[], postId: number | null): Promise<void> {
    const fresh = await this.#o.recorder.queueMedia(urls, postId);
    for (const url of fresh) {
      const done = await this.fetchMedia(url, postId);
      if (done) this.#o.recorder.finalizeMedia(done).catch(() => undefined); // a failed commit is reported by commit()
    }
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

  /** Records every hop of one fetch, then releases their spooled bodies (this plan owns them). */
  async #record(hops: Capture[], name: string, postId: number | null): Promise<{ rows: CaptureRow[] }> {
    try {
      const recorded = await this.#o.recorder.recordCapture(hops, name, postId);
      this.#o.stats.recorded(recorded, this.#o.recorder.warcsClosed);
      return recorded;
    } finally {
      for (const hop of hops) await releaseBody(hop.body);
    }
  }

  /**
   * The primary capture, decided by the profile's status rules (crawler/run/status-rules.ts) and
   * fetched again, after a pause for the whole part, while they say "retry later" (a rate limit
   * in a 200 or 400 body); a retried answer is never recorded. With URL alternatives, each is
   * tried so, in order, until one is archived.
   */
  async #primary(spec: CaptureSpec, values: Record<string, string | undefined>, id: number): Promise<CaptureResult> {
    const { profile, signal } = this.#o;
    return this.#alternatives(spec, values, async (url) => {
      let attempts = 0;
      const got = await fetchWithStatusRules<CaptureResult>({
        attempt: async () => {
          const one = await this.#fetchCapture(spec, url, id, true);
          attempts += one.attempts;
          return one;
        },
        decide: (one) => {
          const d = one.decision!;
          // A browser capture was recorded as it loaded: it is not fetched again within this run.
          return d.kind === 'retry' && one.rows.length > 0 ? { kind: 'final', status: 'failed', rule: d.rule, reason: d.reason } : d;
        },
        discard: async () => undefined,
        retryAfterMs: (one) => one.retryAfterMs,
        maxAttempts: profile.politeness.maxAttempts,
        gate: this.#gate,
        signal,
        onRetry: (d) => this.#log.log('info', `ID ${this.#o.codec.encode(id)}: ${d.reason}; trying again`, { id }),
      });
      return { ...got.result, attempts, decision: got.decision };
    });
  }

  async #httpCapture(spec: CaptureSpec, url: string, id: number, primary: boolean): Promise<CaptureResult> {
    const { stack, stats, signal } = this.#o;
    let outcome;
    try {
      outcome = await stack.fetcher.fetch(url, { accept: acceptFor(spec.type), ...spec.headers });
    } catch (err) {
      if (err instanceof StorageError || signal.aborted) throw err;
      stats.fetchError();
      return { ...nothing(), attempts: attemptsOf(err), error: errorMessage(err), refused: err instanceof ScopeError };
    }
    const last = outcome.answer;
    let ex: Extracted;
    try {
      ex = await extract(last, spec.extract, spec.type, this.#limits, signal, spec.requisites);
    } catch (err) {
      for (const hop of outcome.captures) await releaseBody(hop.body);
      throw err;
    }
    const decision = this.#decide({ status: last.status, text: ex.text }, primary);
    if (decision.kind === 'retry') {
      for (const hop of outcome.captures) await releaseBody(hop.body);
      const retryAfterMs = parseRetryAfter(/^retry-after:[ \t]*(.*)$/im.exec(last.responseHead.toString('latin1'))?.[1]);
      return { ...nothing(), attempts: outcome.attempts, status: last.status, text: ex.text, decision, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    if (ex.problem) this.#log.log('debug', `extraction of ${last.url}: ${ex.problem}`, { id });
    const { rows } = await this.#record(outcome.captures, spec.name, id);
    return {
      rows,
      attempts: outcome.attempts,
      status: last.status,
      ...(outcome.stopped ? { stopped: outcome.stopped } : {}),
      fields: ex.fields,
      media: resolveUrls(ex.media, last.url),
      ids: ex.ids,
      text: ex.text,
      ...(ex.problem ? { problem: ex.problem } : {}),
      ...(ex.requisites.length > 0 ? { requisites: this.#requisites.inScope(ex.requisites) } : {}),
      bytes: rows[rows.length - 1]?.bodyBytes ?? 0,
      decision,
    };
  }

  /** Every response the page loaded goes to the WARC (and its screenshot); extraction runs on the rendered DOM. */
  async #browserCapture(spec: CaptureSpec, url: string, id: number): Promise<CaptureResult> {
    const { stack, stats, signal, recorder } = this.#o;
    let got;
    try {
      got = await stack.browserFetcher!.fetch(url);
    } catch (err) {
      if (err instanceof StorageError || signal.aborted || (err instanceof LifeboatError && err.policy === 'stop')) throw err;
      stats.fetchError();
      return { ...nothing(), attempts: 1, error: errorMessage(err), refused: err instanceof ScopeError };
    }
    let ex: Extracted;
    try {
      ex = await extract(got.answer, spec.extract, spec.type, this.#limits, signal);
    } catch (err) {
      for (const hop of got.captures) await releaseBody(hop.body);
      throw err;
    }
    if (ex.problem) this.#log.log('debug', `extraction of the rendered ${got.finalUrl}: ${ex.problem}`, { id });
    const { rows } = await this.#record(got.captures, spec.name, id);
    if (got.rendered?.screenshot) {
      const shot = await recorder.recordResource({ url: `urn:screenshot:${got.finalUrl}`, contentType: 'image/png', data: got.rendered.screenshot });
      stats.recorded({ records: 1, bytes: shot.length }, recorder.warcsClosed);
    }
    return {
      rows,
      attempts: got.attempts,
      status: got.status,
      fields: ex.fields,
      media: resolveUrls(ex.media, got.finalUrl),
      ids: ex.ids,
      text: got.rendered?.text,
      bytes: rows.reduce((n, r) => n + r.bodyBytes, 0),
      ...(ex.problem ? { problem: ex.problem } : {}),
    };
  }
}
