import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';

/** Issue 11 §4: a disk that is already full when the crawl starts gets the same clear message as mid-crawl. */
let tmp: string;
let mnt: string;
let mounted = false;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-full-start-'));
  mnt = join(tmp, 'full');
  await mkdir(mnt);
  try {
    // A tmpfs needs mount rights (root here); elsewhere the test is skipped with that reason.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = true;
    await mkdir(join(mnt, 'shard', 'warcs'), { recursive: true });
    // Fill it to the last byte.
    const chunk = Buffer.alloc(4096);
    for (let i = 0; ; i++) {
      try {
        await writeFile(join(mnt, `fill-${i}`), chunk);
      } catch {
        break;
      }
    }
  } catch (err) {
    if (process.env.LIFEBOAT_REQUIRE_ALL === '1') throw err;
  }
});

afterAll(async () => {
  if (mounted) execFileSync('umount', ['-l', mnt]);
  await rm(tmp, { recursive: true, force: true });
});

describe('a disk full before the crawl starts', () => {
  const crawl = async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} };
    const code = await main(['crawl', '--profile', 'demo', '--base-url', 'http://127.0.0.1:9', '--ids', '1-3', '--out', join(mnt, 'shard'), '--allow-private-network', '--quiet'], io);
    return { code, stderr: err.join('') };
  };

  it('with one page left (the lock file fits, the shard database does not): one "disk full" line, exit 1, no stack, no raw SQLite code', async (ctx) => {
    if (!mounted) ctx.skip(); // cannot mount a tmpfs without root
    await rm(join(mnt, 'fill-0'));
    const { code, stderr } = await crawl();
    expect(code, stderr).toBe(1);
    expect(stderr).toMatch(/^lifeboat: disk full: free space and run the same command again to resume \(.*shard\.sqlite\)\n$/);
    expect(stderr).not.toMatch(/SQLITE_|\n\s+at /);
  });

  it('with not a byte left: the same line', async (ctx) => {
    if (!mounted) ctx.skip();
    for (let i = 0; ; i++) {
      try {
        await writeFile(join(mnt, `more-${i}`), Buffer.alloc(4096));
      } catch {
        break;
      }
    }
    const { code, stderr } = await crawl();
    expect(code, stderr).toBe(1);
    expect(stderr).toMatch(/^lifeboat: disk full: free space and run the same command again to resume/);
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});
