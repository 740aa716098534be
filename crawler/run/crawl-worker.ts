/**
 * A crawl worker thread: one part of a shard (IDs with `id % count === index`), with its own HTTP
 * client and ShardRecorder (its WARC files, its connection to the shard database). The main thread (crawl-workers.ts)
 * started it; everything it reports goes back as messages, never to the terminal directly.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage, LifeboatError } from '../../config/errors.js';
import { createLogger } from '../../config/logger.js';
import { crawlPart } from './crawl-part.js';
import { CrawlStats } from '../fetch/crawl-stats.js';
import type { FromWorker, ToWorker, WorkerInput } from './crawl-workers.js';
import { RangeSet } from '../../config/id-ranges.js';

const port = parentPort!;
const input = workerData as WorkerInput;
const send = (m: FromWorker): void => port.postMessage(m);

const controller = new AbortController();
port.on('message', (m: ToWorker) => {
  if (m.type === 'abort') controller.abort(new Error(m.reason));
});

const stats = new CrawlStats();
const logger = createLogger((e) => send({ type: 'log', ...e }), 'root');
const statsTimer = setInterval(() => send({ type: 'stats', counters: stats.counters() }), input.statsIntervalMs);
try {
  const { aborted } = await crawlPart({
    ...input,
    ranges: RangeSet.fromJSON(input.ranges),
    logger,
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
  port.close();
}
