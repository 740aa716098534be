import { join } from 'node:path';

/**
 * The directory layouts, named in one place (a contract: README "What a shard holds").
 *
 * A shard: `DIR/shard.sqlite` (what was found, where its records are), `DIR/shard.json` (the
 * manifest: profile, ranges, counts, every WARC's size and sha256), `DIR/warcs/*.warc.gz` (the
 * one being written ends in `.open`). A merged set: `DIR/merged.sqlite`, `DIR/warcs/`,
 * `DIR/indexes/index.cdxj`, the coverage report beside them.
 */
export const SHARD_DB = 'shard.sqlite';
export const SHARD_MANIFEST = 'shard.json';
export const WARCS_DIR = 'warcs';
export const MERGED_DB = 'merged.sqlite';

/** `DIR/shard.sqlite` */
export const shardDbPath = (dir: string): string => join(dir, SHARD_DB);
/** `DIR/shard.json` */
export const manifestPath = (dir: string): string => join(dir, SHARD_MANIFEST);
/** `DIR/warcs` */
export const warcsDir = (dir: string): string => join(dir, WARCS_DIR);
/** `DIR/warcs/NAME` */
export const warcPath = (dir: string, name: string): string => join(dir, WARCS_DIR, name);
/** `DIR/merged.sqlite` */
export const mergedDbPath = (dir: string): string => join(dir, MERGED_DB);
