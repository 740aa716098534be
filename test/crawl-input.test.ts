import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { expectComplete } from './fixtures/shard-check.js';

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('bad input gets a clear error and leaves nothing corrupt', () => {
  let platform: DemoPlatform;
  let tmp: string;
  beforeAll(async () => {
    platform = await startDemoPlatform({ posts: 120 });
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-input-'));
  });
  afterAll(async () => {
    await platform.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('a malformed profile names the file and key, exit 2', async () => {
    const file = join(tmp, 'bad.yaml');
    await writeFile(file, 'name: x\nbase_url: http://127.0.0.1:1\ncaptures:\n  - {name: a, url: "{base_url}/{id}", typ: json}\n');
    const r = await run(['crawl', '--profile', file, '--ids', '1-2', '--out', join(tmp, 'o1')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: captures[0]: unknown key "typ"`);
  });

  it('an invalid range names the part, exit 2, and creates nothing', async () => {
    const out = join(tmp, 'o2');
    const r = await run(['crawl', '--profile', 'demo', '--ids', '1-10,x-5', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bad ID range "x-5"');
    await expect(readdir(out)).rejects.toThrow();
  });

  it('an unknown option or missing flag is a usage error, exit 2', async () => {
    expect((await run(['crawl', '--profile', 'demo', '--ids', '1-2'])).code).toBe(2);
    expect((await run(['crawl', '--profile', 'demo', '--ids', '1-2', '--out', tmp, '--concurrency', '0'])).code).toBe(2);
    expect((await run(['frobnicate'])).code).toBe(2);
  });

  it('refuses loopback without --allow-private-network at once, says why and which flag, and creates nothing', async () => {
    for (const base of [platform.url, platform.url.replace('127.0.0.1', 'localhost')]) {
      const out = join(tmp, 'o3');
      const before = platform.stats.requests;
      const r = await run(['crawl', '--profile', 'demo', '--base-url', base, '--ids', '1-3', '--out', out, '--quiet']);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/refused loopback address 127\.0\.0\.1.*pass --allow-private-network/);
      if (base.includes('localhost')) expect(r.stderr).toContain('localhost resolves to it');
      await expect(readdir(out)).rejects.toThrow();
      expect(platform.stats.requests).toBe(before);
    }
    // 1-latest asks the platform for its highest ID first: refused before that request too.
    const r = await run(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-latest', '--out', join(tmp, 'o3')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--allow-private-network');
  });

  it('an unwritable output directory is named, exit 1', async () => {
    const out = join(tmp, 'locked');
    await mkdir(out);
    await chmod(out, 0o500);
    const asRoot = process.getuid?.() === 0;
    // root ignores permissions: use a path under a regular file instead, which fails for everyone.
    const target = asRoot ? join(tmp, 'bad.yaml', 'sub') : join(out, 'sub');
    const r = await run(['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-3', '--out', target, '--allow-private-network']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot use the output directory ${target}`);
  });

  it('a full disk stops the crawl with a clear message; with space again, the same command resumes and completes', async (ctx) => {
    const mnt = join(tmp, 'small');
    await mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=400k', 'tmpfs', mnt]);
    } catch (err) {
      if (process.env.LIFEBOAT_REQUIRE_ALL === '1') throw err;
      ctx.skip();
    }
    try {
      const out = join(mnt, 'shard');
      const args = ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-120', '--out', out, '--allow-private-network', '--quiet'];
      const full = await run(args);
      expect(full.code).toBe(1);
      expect(full.stderr).toMatch(/disk full|ENOSPC|SQLITE_FULL|no space/i);
      // What is there is valid: the torn tail is cut back on the next start, and the DB still opens.
      execFileSync('mount', ['-o', 'remount,size=64m', mnt]);
      const again = await run(args);
      expect(again.code, again.stderr).toBe(0);
      await expectComplete(platform, out, 120);
      expect((await verifyPaths([out])).defects).toEqual([]);
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
