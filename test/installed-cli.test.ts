import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The way a volunteer runs lifeboat: `npm pack`, `npm install ./lifeboat-*.tgz` in another
 * folder, then `npx lifeboat …` through the bin link npm made. (Regression: the CLI compared
 * `import.meta.url` with `process.argv[1]`, the link's path, and silently did nothing.)
 * Uses the compiled dist/ (`npm test` builds first) and the npm cache (no network).
 */
const ROOT = resolve('.');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command with npm's own variables from a parent `npm test` removed, so they do not leak in. */
function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  // npx must never fetch a package called "lifeboat" from the registry if the local link is broken.
  env.npm_config_yes = 'false';
  return new Promise((done) => {
    execFile(cmd, args, { cwd, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      done({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

describe('the packed and installed command', () => {
  let tmp: string;
  let app: string;
  let tarball: string;
  beforeAll(async () => {
    expect(existsSync(join(ROOT, 'dist/scripts/cli/bin.js')), 'run `npm run build` first').toBe(true);
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-installed-'));
    const packed = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp], ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    tarball = join(tmp, (await readdir(tmp)).find((n) => /^lifeboat-.*\.tgz$/.test(n))!);
    app = join(tmp, 'app');
    await mkdir(app);
    await writeFile(join(app, 'package.json'), '{"name": "volunteer", "private": true}\n');
    // --ignore-scripts: better-sqlite3 would download a prebuilt binary (no network here) or
    // compile itself for ~90 s. The checkout's binary is the same version for the same Node.
    const installed = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', tarball], app, 180_000);
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.stderr).not.toMatch(/EBADENGINE/);
    const ours = JSON.parse(await readFile(join(ROOT, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string };
    const theirs = JSON.parse(await readFile(join(app, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string };
    const binary = 'build/Release/better_sqlite3.node';
    if (ours.version === theirs.version && existsSync(join(ROOT, 'node_modules/better-sqlite3', binary))) {
      await mkdir(join(app, 'node_modules/better-sqlite3/build/Release'), { recursive: true });
      await copyFile(join(ROOT, 'node_modules/better-sqlite3', binary), join(app, 'node_modules/better-sqlite3', binary));
    } else {
      const rebuilt = await run('npm', ['rebuild', 'better-sqlite3'], app, 300_000);
      expect(rebuilt.code, rebuilt.stderr).toBe(0);
    }
  }, 480_000);
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('ships the compiled CLI, its profiles and the README, and no tests or CI files', async () => {
    const listed = await run('tar', ['-tzf', tarball], tmp);
    const files = listed.stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    expect(files).toContain('dist/scripts/cli/bin.js');
    expect(files).toContain('dist/config/profiles/demo.yaml');
    expect(files).toContain('README.md');
    expect(files.filter((f) => /^(test|\.ci)\//.test(f) || f.endsWith('.ts') || f.endsWith('.map'))).toEqual([]);
  });

  it('`npx lifeboat --help` prints the commands; no arguments is bad usage (exit 2, help on stderr)', async () => {
    const help = await run('npx', ['lifeboat', '--help'], app);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: lifeboat /);
    expect(help.stdout).toContain('crawl');
    const bare = await run(join(app, 'node_modules/.bin/lifeboat'), [], app);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toMatch(/Usage: lifeboat /);
  });

  it('`npx lifeboat` in the checkout itself runs the CLI too', async () => {
    const version = await run('npx', ['lifeboat', '--version'], ROOT);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('`npx lifeboat demo` crawls, verifies and prints the summary through the bin link', async () => {
    const out = join(tmp, 'demo-out');
    const demo = await run('npx', ['lifeboat', 'demo', '--posts', '20', '--out', out], app);
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/archived \d+, missing \d+, gone \d+, restricted \d+, failed 0; this run: ids 20, records \d+, bytes \d+, warcs 1\n$/);
    expect(demo.stderr).toContain('0 defects');
    expect((await readdir(join(out, 'warcs'))).filter((n) => n.endsWith('.warc.gz'))).toHaveLength(1);
  });
});
