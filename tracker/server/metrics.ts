import type { TrackerStats } from '../store/item-store.js';

export const COUNTERS = ['claims_lease', 'claims_later', 'claims_done', 'heartbeats', 'done', 'done_duplicate', 'releases', 'fails', 'expired', 'registrations', 'upload_urls', 'done_unverified', 'media_reported', 'media_refused', 'claims_capped'] as const;
export type CounterName = (typeof COUNTERS)[number];

/**
 * This tracker process's counters (each process behind a load balancer counts its own) plus
 * gauges from the shared store's stats, rendered in the Prometheus text format.
 */
export class TrackerMetrics {
  #counts = new Map<CounterName, number>(COUNTERS.map((c) => [c, 0]));

  inc(name: CounterName, by = 1): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + by);
  }

  get(name: CounterName): number {
    return this.#counts.get(name) ?? 0;
  }

  render(stats: TrackerStats): string {
    const c = (name: CounterName) => this.get(name);
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    const p = `project="${stats.project}"`;
    metric('lifeboat_tracker_claims_total', 'counter', 'Claims answered by this process, by outcome.', [
      [`{${p},result="lease"}`, c('claims_lease')],
      [`{${p},result="later"}`, c('claims_later')],
      [`{${p},result="done"}`, c('claims_done')],
      [`{${p},result="capped"}`, c('claims_capped')],
    ]);
    metric('lifeboat_tracker_heartbeats_total', 'counter', 'Heartbeats accepted by this process.', [[`{${p}}`, c('heartbeats')]]);
    metric('lifeboat_tracker_media_reported_total', 'counter', 'Media URLs reported in heartbeats accepted by this process (before dedupe).', [[`{${p}}`, c('media_reported')]]);
    metric('lifeboat_tracker_media_refused_total', 'counter', 'Reported media URLs left out by this process (port not named, over a budget or quota).', [[`{${p}}`, c('media_refused')]]);
    metric('lifeboat_tracker_refused', 'gauge', 'Refusals recorded in the store, all nodes: media URLs over a budget, claims over the lease cap, leases taken for no progress.', [
      [`{${p},kind="media"}`, stats.refused.media],
      [`{${p},kind="claims"}`, stats.refused.claims],
      [`{${p},kind="stalled_leases"}`, stats.refused.stalledLeases],
    ]);
    metric('lifeboat_tracker_media_failed', 'gauge', 'Media URLs given up on after media.max_attempts.', [[`{${p}}`, stats.mediaFailed]]);
    metric('lifeboat_tracker_done_total', 'counter', 'Items finished through this process (duplicates excluded).', [[`{${p}}`, c('done')]]);
    metric('lifeboat_tracker_done_duplicate_total', 'counter', 'Repeated done reports ignored.', [[`{${p}}`, c('done_duplicate')]]);
    metric('lifeboat_tracker_upload_urls_total', 'counter', 'Pre-signed upload URLs handed out by this process.', [[`{${p}}`, c('upload_urls')]]);
    metric('lifeboat_tracker_done_unverified_total', 'counter', 'Done reports refused because a WARC was not in the upload bucket as reported.', [[`{${p}}`, c('done_unverified')]]);
    metric('lifeboat_tracker_releases_total', 'counter', 'Items given back, by reason.', [
      [`{${p},reason="release"}`, c('releases')],
      [`{${p},reason="fail"}`, c('fails')],
    ]);
    metric('lifeboat_tracker_expired_leases_total', 'counter', 'Overdue leases returned to the queue by this process.', [[`{${p}}`, c('expired')]]);
    metric('lifeboat_tracker_registrations_total', 'counter', 'Nodes registered through this process.', [[`{${p}}`, c('registrations')]]);
    metric('lifeboat_tracker_active_nodes', 'gauge', 'Nodes holding a live lease.', [[`{${p}}`, stats.activeNodes]]);
    metric('lifeboat_tracker_ids_per_second', 'gauge', `IDs finished per second over the last ${stats.rateWindowSecs} s.`, [[`{${p}}`, stats.rateIdsPerSec]]);
    metric('lifeboat_tracker_ids', 'gauge', 'IDs in the project, by state.', [
      [`{${p},state="total"}`, stats.ids.total],
      [`{${p},state="done"}`, stats.ids.done],
    ]);
    metric('lifeboat_tracker_bytes', 'gauge', 'Bytes reported by finished items.', [[`{${p}}`, stats.bytes]]);
    // NaN (Prometheus' "no value") while nothing moves, so a dashboard does not draw a fake zero.
    metric('lifeboat_tracker_eta_seconds', 'gauge', 'Seconds until every ID is done at the current rate.', [[`{${p}}`, stats.etaSecs ?? Number.NaN]]);
    metric('lifeboat_tracker_items', 'gauge', 'Items by state.', [
      [`{${p},state="queued"}`, stats.items.queued],
      [`{${p},state="claimed"}`, stats.items.claimed],
      [`{${p},state="done"}`, stats.items.done],
    ]);
    if (stats.deadline) {
      const d = stats.deadline;
      metric('lifeboat_tracker_deadline_seconds', 'gauge', 'Seconds left until the project deadline.', [[`{${p}}`, d.secondsLeft]]);
      metric('lifeboat_tracker_projected_coverage', 'gauge', 'Share of each kind of work projected done at the deadline (0..1).', d.kinds.map((k) => [`{${p},kind="${k.kind}"}`, k.coverage] as [string, number]));
      metric('lifeboat_tracker_coverage', 'gauge', 'Share of each kind of work done now (0..1).', d.kinds.map((k) => [`{${p},kind="${k.kind}"}`, k.units > 0 ? k.finished / k.units : 1] as [string, number]));
    }
    return `${lines.join('\n')}\n`;
  }
}
