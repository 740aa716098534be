/**
 * The benchmark's ceiling as a command of its own: fetches every URL of a list with undici at
 * the given concurrency and discards the bodies. bench.ts times it as a whole process, the same
 * way it times `lifeboat crawl` and `wget`, so start-up counts alike for all three.
 *
 *   node dist/scripts/bench/bench-plain.js URLS.txt CONCURRENCY
 */
import { readFile } from 'node:fs/promises';
import PQueue from 'p-queue';
import { Agent, request } from 'undici';

export async function fetchAll(urls: string[], concurrency: number): Promise<number> {
  const agent = new Agent({ connections: concurrency });
  const queue = new PQueue({ concurrency });
  let bytes = 0;
  for (const url of urls) {
    void queue.add(async () => {
      const res = await request(url, { dispatcher: agent, headers: { 'accept-encoding': 'gzip, deflate, br' } });
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
    });
  }
  await queue.onIdle();
  await agent.close();
  return bytes;
}

const [list, concurrency] = process.argv.slice(2);
if (list && concurrency) {
  const urls = (await readFile(list, 'utf8')).split('\n').filter(Boolean);
  process.stdout.write(`${await fetchAll(urls, Number(concurrency))}\n`);
}
