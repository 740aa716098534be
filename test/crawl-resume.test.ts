import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { expectComplete } from './fixtures/shard-check.js';
import { CLI, spawnCli } from '../scripts/soak/harness.js';

const runCli = (args: string[], killAfterMs?: number) => spawnCli(args, killAfterMs);

/** A deterministic sequence of kill delays (so a failure can be reproduced). */
function* delays(seed: number): Generator<number> {
  let x = seed;
  for (;;) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    yield 150 + (x % 1600);
  }
}

describe('kill -9 and resume', () => {
  let platform: DemoPlatform;
  let tmp: string;
  beforeAll(async () => {
    expect(existsSync(CLI), 'dist/ is built (npm test builds it first)').toBe(true);
    platform = await startDemoPlatform({ posts: 800, trackPaths: false, chaos: { rate: 0.02, stallMs: 800 } });
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-kill-'));
  });
  afterAll(async () => {
    await platform.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('is killed at random moments at least 5 times, then finishes with full coverage and valid WARCs', async () => {
    const dir = join(tmp, 'shard');
    const args = ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-800', '--out', dir, '--allow-private-network', '--quiet', '--concurrency', '8', '--warc-size', '300000'];
    let kills = 0;
    const gen = delays(7);
    for (let i = 0; i < 12 && kills < 6; i++) {
      // Every other run splits the work between 2 worker threads: a kill may hit either layout.
      const r = await runCli(i % 2 === 1 ? [...args, '--workers', '2'] : args, gen.next().value);
      if (r.signal === 'SIGKILL') kills++;
      else {
        expect(r.code, r.stderr).toBe(0);
        break;
      }
    }
    expect(kills).toBeGreaterThanOrEqual(5);
    // Between kills, what is on disk is already consistent: verify passes (torn .open tails aside).
    const final = await runCli(args);
    expect(final.code, final.stderr).toBe(0);
    expect(final.stdout).toMatch(/failed 0;/);
    await expectComplete(platform, dir, 800);
    const report = await verifyPaths([dir]);
    expect(report.defects).toEqual([]);
    expect((await readdir(join(dir, 'warcs'))).some((f) => f.endsWith('.open'))).toBe(false);
  });

  it('Ctrl-C stops cleanly: closed WARCs, exit 1 with a resume hint, and the next run completes', async () => {
    const dir = join(tmp, 'sigint');
    const args = ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-800', '--out', dir, '--allow-private-network', '--quiet', '--concurrency', '4'];
    // Interrupt once the crawl is writing (its .open WARC exists), not during start-up.
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on('exit', (code, signal) => done({ code, signal })));
    for (let i = 0; i < 200; i++) {
      const files = await readdir(join(dir, 'warcs')).catch(() => [] as string[]);
      if (files.some((f) => f.endsWith('.open'))) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    await new Promise((res) => setTimeout(res, 300));
    child.kill('SIGINT');
    const r = { ...(await exited), stdout, stderr };
    expect(r.signal).toBeNull();
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stderr).toMatch(/interrupted: run the same command again to resume/);
    expect((await readdir(join(dir, 'warcs'))).some((f) => f.endsWith('.open'))).toBe(false);
    expect((await verifyPaths([dir])).defects).toEqual([]);
    const again = await runCli(args);
    expect(again.code, again.stderr).toBe(0);
    await expectComplete(platform, dir, 800);
  });
});
