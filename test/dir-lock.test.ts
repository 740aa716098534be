import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoPlatform, type DemoPlatform } from '../scripts/demo/demo-platform.js';
import { acquireDirLock, DirInUseError, LOCK_FILE, lockHolder, processStartTime } from '../storage/shard/dir-lock.js';
import { verifyPaths } from '../storage/curate/verify.js';
import { UploadLedger } from '../storage/upload/ledger.js';
import { mergeShards } from '../storage/curate/merge.js';
import { runNode } from '../node/loop.js';
import { createLogger } from '../config/logger.js';
import { expectComplete } from './fixtures/shard-check.js';

const CLI = resolve('dist/scripts/cli/cli.js');

interface Run {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

function startCli(args: string[]): Run {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Awaited<Run['done']>>((ok) => child.on('exit', (code, signal) => ok({ code, signal, stdout, stderr })));
  return { child, done };
}

/** Waits until `dir` is locked by `pid` and has a WARC being written (so the crawl is mid-run). */
async function untilWriting(dir: string, pid: number, run: Run): Promise<void> {
  let exited = false;
  void run.done.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`the crawl ended before it was seen writing: ${(await run.done).stderr}`);
    const open = existsSync(join(dir, 'warcs')) && (await readdir(join(dir, 'warcs'))).some((n) => n.endsWith('.open'));
    if (open && lockHolder(dir)?.pid === pid) return;
    await sleep(50);
  }
}

describe('the directory lock (storage/shard/dir-lock.ts)', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-lock-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('refuses a second holder with the first one’s pid and start, and is free again after release', async () => {
    const dir = join(tmp, 'a');
    await mkdir(dir);
    const lock = acquireDirLock(dir, 'crawl');
    let err: unknown;
    try {
      acquireDirLock(dir, 'merge');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DirInUseError);
    expect((err as Error).message).toBe(`${dir} is in use by process ${process.pid} (crawl, started ${lock.owner.startedAt}); wait for it to finish or stop it first`);
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    acquireDirLock(dir, 'crawl').release();
  });

  it('a lock whose holder is gone is free without cleanup, whatever its card says: the kernel lock decides', async () => {
    const dir = join(tmp, 'b');
    await mkdir(dir);
    const path = join(dir, LOCK_FILE);
    const base = { host: hostname(), command: 'crawl', startedAt: '2026-01-01T00:00:00.000Z' };
    // Cards left by a dead process, a reused pid, a torn write, or naming this very process: no kernel lock, so free.
    for (const card of [JSON.stringify({ ...base, pid: await deadPid(), procStart: '1' }), JSON.stringify({ ...base, pid: process.pid, procStart: `${processStartTime('self')}9` }), '', JSON.stringify({ ...base, pid: process.pid, procStart: processStartTime('self') })]) {
      await writeFile(path, card);
      expect(lockHolder(dir)).toBeUndefined();
      const lock = acquireDirLock(dir, 'crawl');
      expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({ pid: process.pid, command: 'crawl' });
      lock.release();
    }
    // Another host's card cannot be checked from here (a network disk may not carry kernel locks):
    // obeyed, never judged by this host's process table (its pid is dead here), and the message says how to clear it.
    await writeFile(path, JSON.stringify({ ...base, pid: await deadPid(), host: 'elsewhere.example' }));
    expect(() => acquireDirLock(dir, 'crawl')).toThrow(/is in use by process \d+ \(crawl, started 2026-01-01T00:00:00\.000Z on host elsewhere\.example; if that machine is gone, delete .*\.lifeboat\.lock\)/);
    await rm(path);
    acquireDirLock(dir, 'crawl').release();
  });

  it('a live holder in another process is never judged stale, even when its pid is not visible here (another PID namespace); its death frees the lock at once', async () => {
    const dir = join(tmp, 'c');
    await mkdir(dir);
    // A holder process; then its card is rewritten to name a pid this process table does not have,
    // as a crawl in a container (same host name and boot id, its own PID namespace) looks from here.
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `import { acquireDirLock } from ${JSON.stringify(resolve('dist/storage/shard/dir-lock.js'))}; acquireDirLock(${JSON.stringify(dir)}, 'crawl'); console.log('locked'); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((ok, fail) => {
        holder.stdout!.on('data', (d) => String(d).includes('locked') && ok());
        holder.on('exit', (code) => fail(new Error(`the holder exited ${code}`)));
      });
      const card = JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')) as Record<string, unknown>;
      expect(card).toMatchObject({ pid: holder.pid, host: hostname(), command: 'crawl' });
      const ghost = await deadPid();
      await writeFile(join(dir, LOCK_FILE), JSON.stringify({ ...card, pid: ghost, procStart: '1' }));
      expect(() => acquireDirLock(dir, 'crawl')).toThrow(new RegExp(`is in use by process ${ghost} \\(crawl, started `));
      expect(lockHolder(dir)).toMatchObject({ pid: ghost, command: 'crawl' });
      // Its card gone too: still refused, the holder just cannot be named.
      await rm(join(dir, LOCK_FILE));
      expect(() => acquireDirLock(dir, 'merge')).toThrow(/is in use by another process \(its \.lifeboat\.lock cannot be read\)/);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((ok) => (holder.exitCode !== null || holder.signalCode !== null ? ok(undefined) : holder.on('exit', ok)));
    }
    // kill -9: the kernel let go with the process; the next writer takes it at once.
    expect(lockHolder(dir)).toBeUndefined();
    const lock = acquireDirLock(dir, 'crawl');
    expect(lockHolder(dir)).toMatchObject({ pid: process.pid });
    lock.release();
    expect(lockHolder(dir)).toBeUndefined();
  });
});

/** The pid of a process that has exited (its pid answers ESRCH here). */
async function deadPid(): Promise<number> {
  const gone = spawn(process.execPath, ['-e', '']);
  await new Promise((ok) => gone.on('exit', ok));
  return gone.pid!;
}

describe('every writer takes the lock', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-lock-writers-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('upload’s ledger, a node and a merge into a held directory are refused; the ledger holds the lock until closed', async () => {
    const dir = join(tmp, 'shard');
    await mkdir(join(dir, 'warcs'), { recursive: true });
    const held = acquireDirLock(dir, 'crawl');
    expect(() => UploadLedger.open(dir)).toThrow(/is in use by process \d+ \(crawl, started /);
    await expect(runNode({ trackerUrl: 'http://127.0.0.1:9', nick: 'n', outDir: dir, logger: createLogger(() => undefined), nodeName: 'n' })).rejects.toThrow(DirInUseError);
    const merged = join(tmp, 'merged');
    await mkdir(merged);
    await writeFile(join(merged, 'merged.sqlite'), ''); // looks like an earlier merge output
    const mergeLock = acquireDirLock(merged, 'merge');
    await expect(mergeShards({ inputs: [dir], out: merged })).rejects.toThrow(/merged is in use by process/);
    mergeLock.release();
    held.release();
    const ledger = UploadLedger.open(dir);
    expect(lockHolder(dir)).toMatchObject({ pid: process.pid, command: 'upload' });
    expect(() => acquireDirLock(dir, 'crawl')).toThrow(/\(upload, started/);
    ledger.close();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });
});

describe('one crawl per shard, through the CLI', () => {
  let platform: DemoPlatform;
  let tmp: string;
  beforeAll(async () => {
    expect(existsSync(CLI), 'dist/ is built (npm test builds it first)').toBe(true);
    platform = await startDemoPlatform({ posts: 120, trackPaths: false });
    tmp = await mkdtemp(join(tmpdir(), 'lifeboat-lock-cli-'));
  });
  afterAll(async () => {
    await platform.close();
    await rm(tmp, { recursive: true, force: true });
  });
  const args = (dir: string, extra: string[] = []) => ['crawl', '--profile', 'demo', '--base-url', platform.url, '--ids', '1-120', '--out', dir, '--allow-private-network', '--quiet', ...extra];

  it('a second crawl on a running shard exits 2 at once; status and verify say it is running; the first completes intact', async () => {
    const dir = join(tmp, 'two');
    const first = startCli(args(dir, ['--workers', '2', '--rate', '15', '--concurrency', '4'])); // slow enough to be seen running by three more commands on a loaded machine
    await untilWriting(dir, first.child.pid!, first);
    const second = await startCli(args(dir)).done;
    expect(second.code, second.stderr).toBe(2);
    expect(second.stderr).toMatch(new RegExp(`is in use by process ${first.child.pid} \\(crawl, started \\d{4}-\\d\\d-\\d\\dT`));
    expect(second.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const status = await startCli(['status', dir]).done;
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`running: crawl by process ${first.child.pid} `));
    expect(status.stdout).not.toMatch(/left: nothing/);
    const verify = await startCli(['verify', dir]).done;
    expect(verify.stderr).toMatch(new RegExp(`running — crawl by process ${first.child.pid}`));
    // The running crawl's .open WARC is its own, not a defect (issue 22 §3): exit 0 when what is final is sound.
    expect(verify.stderr).toContain('its .open WARC is its own, not a defect');
    expect(verify.stdout).not.toMatch(/defect: .*\.open/);
    expect(verify.code, verify.stdout).toBe(0);
    const end = await first.done;
    expect(end.code, end.stderr).toBe(0);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    expect((await verifyPaths([dir])).defectCount).toBe(0);
    await expectComplete(platform, dir, 120);
    const after = await startCli(['status', dir]).done;
    expect(after.stdout).not.toMatch(/running:/);
    expect(after.stdout).toMatch(/left: nothing/);
    const verified = await startCli(['verify', dir]).done;
    expect(verified.code, verified.stdout).toBe(0);
    // Every command ended normally: no SQLite -wal/-shm/-journal files and no lock card left behind (issue 10 §3);
    // the lock database stays (deleting a lock file others may have open would let two hold it) and is free.
    expect((await readdir(dir)).filter((n) => /-(wal|shm|journal)$|\.lifeboat\.lock/.test(n))).toEqual(['.lifeboat.lock.db']);
    expect(lockHolder(dir)).toBeUndefined();
  });

  it('a crawl killed with -9 leaves a lock that does not block the next run', async () => {
    const dir = join(tmp, 'killed');
    const first = startCli(args(dir, ['--rate', '40', '--concurrency', '4']));
    await untilWriting(dir, first.child.pid!, first);
    first.child.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')).pid).toBe(first.child.pid);
    expect(lockHolder(dir)).toBeUndefined();
    const again = await startCli(args(dir)).done;
    expect(again.code, again.stderr).toBe(0);
    expect((await verifyPaths([dir])).defectCount).toBe(0);
    await expectComplete(platform, dir, 120);
  });
});
