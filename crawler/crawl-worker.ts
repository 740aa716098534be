/**
 * A crawl worker thread: one part of a shard (IDs with `id % count === index`), with its own HTTP
 * client, WARC writer and connection to the shard database. The main thread (crawl-workers.ts)
 * started it; everything it reports goes back as messages, never to the terminal directly.
 */
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage, LifeboatError } from '../config/errors.js';
import { createLogger } from '../config/logger.js';
import { ShardDb } from '../storage/shard-db.js';
import { crawlPart } from './crawl-part.js';
import { CrawlStats } from './crawl-stats.js';
import type { FromWorker, ToWorker, WorkerInput } from './crawl-workers.js';
import { RangeSet } from '../config/id-ranges.js';

const port = parentPort!;
const input = workerData as WorkerInput;
const send = (m: FromWorker): void => port.postMessage(m);

const controller = new AbortController();
port.on('message', (m: ToWorker) => {
  if (m.type === 'abort') controller.abort(new Error(m.reason));
});

const stats = new CrawlStats();
const logger = createLogger((e) => send({ type: 'log', ...e }), 'root');
let db: ShardDb | undefined;
const statsTimer = setInterval(() => send({ type: 'stats', counters: stats.counters() }), input.statsIntervalMs);
try {
  db = new ShardDb(join(input.outDir, 'shard.sqlite'));
  const { aborted } = await crawlPart({
    ...input,
    ranges: RangeSet.fromJSON(input.ranges),
    logger,
    db,
    stats,
    signal: controller.signal,
    onCommitted: (ids) => send({ type: 'committed', ids }),
  });
  send({ type: 'done', aborted, counters: stats.counters() });
} catch (err) {
  send({
    type: 'error',
    counters: stats.counters(),
    error: {
      name: err instanceof Error ? err.constructor.name : 'Error',
      message: errorMessage(err),
      code: err instanceof LifeboatError ? err.code : undefined,
    },
  });
} finally {
  clearInterval(statsTimer);
  db?.close();
  port.close();
}
