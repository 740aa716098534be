import type { IdStatus } from '../../config/id-status.js';

/**
 * What a node and the tracker say to each other, shared by both sides: plain types only, no
 * server code, so the node (crawler/) can import them without pulling in a store.
 */

/** One WARC file a node made for an item. */
export interface WarcReport {
  name: string;
  size: number;
  sha256: string;
}

/** What a node reports when it finishes an item: IDs per status, bytes written and its WARCs. */
export interface DoneStats {
  counts: Record<IdStatus, number>;
  bytes: number;
  warcs: WarcReport[];
}

/** One URL of a leased media item (issue 13): fetch `url`, report `seq` finished. */
export interface MediaUrl {
  seq: number;
  url: string;
}
