/**
 * What one capture's answer is and what it means (ARCHITECTURE.md "One ID", step 6): the result
 * of fetching one URL of a capture, and `CaptureStatus.decide`, the one place an answer's meaning
 * is decided (the profile's status rules, crawler/run/status-rules.ts). The ID's status is what
 * this made of the primary's answer that counts (crawler/run/capture-plan.ts).
 */
import type { CaptureSpec, StatusConfig } from '../../config/profile.js';
import type { CaptureRow, IdStatus } from '../../storage/shard/shard-db.js';
import { decideStatus, type StatusDecision } from './status-rules.js';

/** One URL alternative of a capture as it was tried. */
export interface TriedUrl {
  url: string;
  /** The HTTP status of its last hop; null when nothing answered. */
  http: number | null;
  /** What that answer means (the status lists; the primary's also the status rules), or `error` when nothing usable came back. */
  outcome: IdStatus | 'error';
  error?: string;
}

/** One capture of an ID: what was fetched, extracted and recorded. */
export interface CaptureResult {
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
  /** What the answer means, set by CaptureStatus.decide: the one place that decides. */
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
export function nothing(): CaptureResult {
  return { rows: [], attempts: 0, status: 0, fields: {}, media: [], ids: [], text: undefined };
}

/** Among alternatives none of which was archived, the answer that counts: failed (not known: tried again) over restricted over gone over missing. */
export const STRENGTH: Record<IdStatus, number> = { archived: 5, failed: 4, restricted: 3, gone: 2, missing: 1 };

/** The status a decided answer stands for (`failed` until decided final). */
export function statusOf(one: CaptureResult): IdStatus {
  return one.decision?.kind === 'final' ? one.decision.status : 'failed';
}

/** Why a secondary capture's answer leaves the ID incomplete; undefined when it does not. */
export function incompleteBecause(spec: CaptureSpec, one: CaptureResult): string | undefined {
  if (one.refused) return undefined; // out of scope or disallowed by robots.txt: never to be fetched; a note
  if (one.unbuilt) return `capture "${spec.name}": URL not built: ${one.error}`;
  if (one.error) return `capture "${spec.name}": ${one.error}`;
  // A definite answer — archived, or a status the lists call missing, gone or restricted — is complete.
  if (statusOf(one) !== 'failed') return undefined;
  return `capture "${spec.name}": ${one.url} answered HTTP ${one.status}`;
}

/** A profile's status rules and lists, applied to answers. */
export class CaptureStatus {
  readonly #status: StatusConfig;
  /** The status lists without the rules: what a secondary capture's answer means. */
  readonly #secondaryStatus: StatusConfig;

  constructor(status: StatusConfig) {
    this.#status = status;
    this.#secondaryStatus = { ...status, rules: [], missingBodies: [] };
  }

  /**
   * The one place an answer's meaning is decided: a failed fetch is `failed`; otherwise the
   * profile's status rules and lists (the primary) or the lists alone (a secondary capture).
   */
  decide(one: Pick<CaptureResult, 'error' | 'status' | 'text'>, primary: boolean): StatusDecision {
    if (one.error) return { kind: 'final', status: 'failed', reason: one.error };
    return decideStatus(primary ? this.#status : this.#secondaryStatus, { code: one.status, text: one.text });
  }

  /** The reason for the ID's status in words: the rule or list that decided, which alternative answered. */
  why(spec: CaptureSpec, one: CaptureResult): string {
    const d = one.decision;
    const status = statusOf(one);
    let why: string;
    if (one.error) why = one.unbuilt ? `URL not built: ${one.error}` : one.error;
    else if (d?.kind === 'final' && d.rule) why = `HTTP ${one.status} matched ${d.rule}${d.reason ? `: ${d.reason}` : ''}`;
    else if (d?.kind === 'final' && d.reason) why = d.reason;
    else if (status === 'missing' && !this.#status.missing.includes(one.status)) why = `HTTP ${one.status} with a body listed in status.missing_body`;
    else why = `HTTP ${one.status} is in status.${status}`;
    const n = spec.urlTemplates.length;
    if (n > 1 && one.alternative !== undefined) {
      const at = `alternative ${one.alternative + 1} of ${n} (${one.url ?? spec.urlTemplates[one.alternative]})`;
      why += status === 'archived' ? `; ${at} answered` : `; none archived, the strongest answer was ${at}`;
    }
    return why;
  }
}
