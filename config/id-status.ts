/**
 * An ID's status in a shard (a contract: README "When is an ID done"). The final ones are never crawled again;
 * `failed` is retried by a later run. A node reports a count for each of `ID_STATUSES`.
 */
export const FINAL_STATUSES = ['archived', 'missing', 'gone', 'restricted'] as const;
export type FinalStatus = (typeof FINAL_STATUSES)[number];

/** Every status an ID's row can hold: the final ones and `failed`. */
export const ID_STATUSES = [...FINAL_STATUSES, 'failed'] as const;
export type IdStatus = (typeof ID_STATUSES)[number];
