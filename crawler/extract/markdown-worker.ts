/**
 * The thread that lexes long markdown (markdown-urls.ts `readMarkdownUrls`): one text at a time;
 * the main thread terminates it at the capture's deadline, so a slow text never blocks a crawl.
 */
import { parentPort } from 'node:worker_threads';
import { lexMarkdownUrls, type MarkdownUrlKind, type MarkdownWorkerReply } from './markdown-urls.js';

parentPort?.on('message', (job: { id: number; text: string; kind: MarkdownUrlKind; limit: number }) => {
  let reply: MarkdownWorkerReply;
  try {
    reply = { id: job.id, urls: lexMarkdownUrls(job.text, job.kind, job.limit) };
  } catch (err) {
    reply = { id: job.id, error: (err as Error).message };
  }
  parentPort?.postMessage(reply);
});
