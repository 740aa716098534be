import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pickCrawlFlags, resolveCrawlSettings } from '../config/crawl-settings.js';
import { loadProfile } from '../config/profile.js';
import { buildProgram } from '../scripts/cli/cli.js';
import type { CliIo } from '../scripts/cli/cli-io.js';
import { crawlFlagsFrom } from '../scripts/cli/crawl-flags.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { seedCommand } from '../tracker/server/commands.js';
import { serveTracker, type RunningTracker } from '../tracker/server/server.js';
import { runNode } from '../node/loop.js';
import { silentLogger } from '../config/logger.js';

/** The crawl flags are defined once for `crawl` and `node` (scripts/cli/crawl-flags.ts), and reach the settings by one way. */

const io = { stdout: { write: () => true }, stderr: { write: () => true }, env: {} } as unknown as CliIo;
const optionsOf = (program: Command, name: string) => new Map(program.commands.find((c) => c.name() === name)!.options.map((o) => [o.long!, o]));

describe('one definition of the crawl flags', () => {
  it('gives crawl and node the same flags with the same parsers, and the node every crawl setting it can pass on', () => {
    const program = buildProgram(io, () => undefined);
    const crawl = optionsOf(program, 'crawl');
    const node = optionsOf(program, 'node');
    for (const flag of ['--concurrency', '--rate', '--warc-size', '--contact', '--node', '--base-url', '--allow-private-network', '--browser-concurrency', '--chromium', '--screenshots', '--max-bandwidth', '--max-disk', '--max-hours', '--quiet', '--json']) {
      expect(node.get(flag), flag).toBeDefined();
      expect(node.get(flag)!.parseArg, flag).toBe(crawl.get(flag)!.parseArg);
    }
    for (const flag of ['--follow', '--until', '--workers']) expect(node.has(flag), flag).toBe(false);
    // Where the meaning is the same, so is the help text.
    expect(node.get('--concurrency')!.description).toBe(crawl.get('--concurrency')!.description);
    expect(node.get('--max-hours')!.description).toMatch(/claiming/);
  });

  it('maps flags to settings in one place, leaves unset ones to the schema defaults, and the schema takes the result', () => {
    const flags = crawlFlagsFrom({ rate: 5, warcSize: 8192, maxBandwidth: 1000, concurrency: 3, allowPrivateNetwork: true }, { LIFEBOAT_CHROMIUM: '/opt/chromium' }, 'carol');
    expect(flags).toEqual({ node: 'carol', ratePerSec: 5, warcSizeBytes: 8192, maxBandwidthBytesPerSec: 1000, concurrency: 3, allowPrivateNetwork: true, chromiumPath: '/opt/chromium' });
    const settings = resolveCrawlSettings(loadProfile('demo'), flags);
    expect(settings).toMatchObject({ ratePerSec: 5, warcSizeBytes: 8192, concurrency: 3, workers: 1, screenshots: false, browserConcurrency: 2 });
    expect(pickCrawlFlags({ ...flags, trackerUrl: 'http://x', nick: 'carol', heartbeatMs: 5, unset: undefined })).toEqual(flags);
  });
});

describe('a node passes the crawl flags on to its items', () => {
  let tmp: string;
  let platform: DemoPlatform;
  let tracker: RunningTracker;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-flags-'));
    platform = await startDemoPlatform({ posts: 40 });
    const project = join(tmp, 'project.yaml');
    await writeFile(project, 'name: flags\nprofile: demo\nitem_size: 40\n');
    const db = `sqlite:${join(tmp, 'tracker.sqlite')}`;
    await seedCommand({ db, project: 'flags', ids: '1-40', itemSize: 40, create: true });
    tracker = await serveTracker({ projectFile: project, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-flags-test' }, logger: false });
  });
  afterAll(async () => {
    await tracker?.close();
    await platform?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('--warc-size reaches the item crawl (it was dropped before: one 1 GiB file)', async () => {
    const out = join(tmp, 'n');
    await runNode({ trackerUrl: tracker.url, nick: 'n', outDir: out, logger: silentLogger, nodeName: 'n', baseUrl: platform.url, allowPrivateNetwork: true, exitWhenDone: true, warcSizeBytes: 8192 });
    const [item] = await readdir(join(out, 'items'));
    const warcs = (await readdir(join(out, 'items', item!, 'warcs'))).filter((n) => n.endsWith('.warc.gz'));
    expect(warcs.length).toBeGreaterThan(2);
  });
});
