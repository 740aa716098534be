import { startDemoPlatform } from '../demo/demo-platform.js';
import { crawlCommand } from './crawl-command.js';
import type { CliIo } from './cli-io.js';
import { verifyPaths } from '../../storage/curate/verify.js';

/**
 * `lifeboat demo`: the embedded default. Starts the bundled platform on 127.0.0.1, crawls all
 * of it (IDs 1-latest, found through the profile's discovery endpoint), verifies the shard, and
 * prints the summary line. No internet, no tracker.
 */
export async function demoCommand(o: { posts: number; out: string; chaos: number; rateLimit?: number; json?: boolean }, io: CliIo): Promise<number> {
  const platform = await startDemoPlatform({
    posts: o.posts,
    ...(o.chaos > 0 ? { chaos: { rate: o.chaos, stallMs: 3000 } } : {}),
    ...(o.rateLimit ? { rateLimit: { rps: o.rateLimit } } : {}),
    trackPaths: false,
  });
  try {
    io.stderr.write(`demo platform: ${platform.url} (${o.posts} posts${o.chaos > 0 ? `, chaos ${o.chaos}` : ''})\n`);
    const code = await crawlCommand(
      { profile: 'demo', ids: '1-latest', out: o.out, baseUrl: platform.url, allowPrivateNetwork: true, json: !!o.json, node: 'demo' },
      io,
    );
    if (code !== 0 && code !== 3) return code;
    const report = await verifyPaths([o.out]);
    if (report.defects.length > 0) {
      for (const d of report.defects.slice(0, 20)) io.stderr.write(`defect: ${d.file}${d.offset !== undefined ? ` @${d.offset}` : ''}: ${d.what}\n`);
      io.stderr.write(`verify: ${report.defects.length} defects in ${o.out}\n`);
      return 1;
    }
    io.stderr.write(`verify: ${report.records} records in ${report.files} files, 0 defects\n`);
    return code;
  } finally {
    await platform.close();
  }
}
