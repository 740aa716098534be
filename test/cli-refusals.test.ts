import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closest } from '../config/schema-issue.js';
import { main } from '../scripts/cli/cli.js';
import { TrackerClient, type TrackerRetry } from '../tracker/client/client.js';
import { TrackerUnavailableError } from '../tracker/client/errors.js';

/** Refusals and failures say why, on one line, with the right exit code (issue 10 §4). */

async function run(args: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const STACK = /^\s+at /m;

function listen(server: Server | ReturnType<typeof createNetServer>): Promise<number> {
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done((server.address() as { port: number }).port)));
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lifeboat-refusals-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('usage', () => {
  it('no arguments (or a command group alone) is bad usage: exit 2, the help on stderr', async () => {
    const bare = await run([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toMatch(/^Usage: lifeboat /);
    expect((await run(['tracker'])).code).toBe(2);
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: lifeboat /);
  });
});

describe('paths that are not there', () => {
  it('`verify` of a path that does not exist is one line naming it, exit 2', async () => {
    const missing = join(tmp, 'no-such-shard');
    const r = await run(['verify', missing]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`lifeboat: no such file or directory: ${missing}\n`);
  });

  it('an output folder under a file is one line with the cause said once, exit 1', async () => {
    const file = join(tmp, 'a-file');
    await writeFile(file, 'x');
    const r = await run(['crawl', '--profile', 'demo', '--base-url', 'http://127.0.0.1:9', '--allow-private-network', '--ids', '1-2', '--out', join(file, 'shard')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`lifeboat: cannot use the output directory ${join(file, 'shard')}: ENOTDIR: not a directory, mkdir '${join(file, 'shard', 'warcs')}'\n`);
  });
});

describe('misspelt keys name themselves and the key that was meant', () => {
  it('a profile with `captres:` → unknown key "captres" (did you mean "captures"?), exit 2, nothing created', async () => {
    const file = join(tmp, 'typo.yaml');
    await writeFile(file, 'name: typo\nbase_url: http://127.0.0.1:1\ncaptres:\n  - {name: post, url: "{base_url}/{id}"}\n');
    const out = join(tmp, 'typo-out');
    const r = await run(['crawl', '--profile', file, '--ids', '1-2', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`lifeboat: ${file}: unknown key "captres" (did you mean "captures"?)\n`);
    expect(existsSync(out)).toBe(false);
    // Nested: the key path of the object, and the suggestion among that object's keys.
    await writeFile(file, 'name: typo\nbase_url: http://127.0.0.1:1\ncaptures:\n  - {name: post, url: "{base_url}/{id}", rendr: http}\n');
    expect((await run(['crawl', '--profile', file, '--ids', '1-2', '--out', out])).stderr).toContain(`${file}: captures[0]: unknown key "rendr" (did you mean "render"?)`);
  });

  it('a tracker project with `lease_sec:` → unknown key "lease_sec" (did you mean "lease_secs"?), exit 2', async () => {
    const file = join(tmp, 'project.yaml');
    await writeFile(file, 'name: rescue\nprofile: demo\nitem_size: 10\nlease_sec: 60\nmin_client_version: 0.1.0\n');
    const r = await run(['tracker', 'serve', '--project', file, '--db', `sqlite:${join(tmp, 'serve.sqlite')}`, '--port', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`lifeboat: ${file}: unknown key "lease_sec" (did you mean "lease_secs"?)\n`);
  });

  it('suggests only a near key; otherwise lists the allowed ones', () => {
    expect(closest('captres', ['name', 'captures', 'extract'])).toBe('captures');
    expect(closest('politness', ['politeness', 'media'])).toBe('politeness');
    expect(closest('colour', ['name', 'captures', 'extract'])).toBeUndefined();
  });
});

describe('failed IDs: the summary and status say why', () => {
  let server: Server;
  let url: string;
  let fixed = false;
  beforeAll(async () => {
    // IDs 1-4 answer; 5-7 fail with 500 (until `fixed`); 8-9 redirect out of scope.
    server = createHttpServer((req, res) => {
      const id = Number(/\/api\/posts\/(\d+)/.exec(req.url ?? '')?.[1]);
      if (id >= 5 && id <= 7 && !fixed) res.writeHead(500).end('oops');
      else if (id === 8 || id === 9) res.writeHead(302, { location: `http://127.0.0.2:9/posts/${id}` }).end();
      else if (id >= 1) res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id }));
      else res.writeHead(404).end();
    });
    url = `http://127.0.0.1:${await listen(server)}`;
    await writeFile(
      join(tmp, 'failing.yaml'),
      `name: failing\nbase_url: ${url}\ncaptures:\n  - {name: post, url: "{base_url}/api/posts/{id}", type: json}\n` +
        'politeness: {max_attempts: 1, robots: ignore}\nmedia: {fetch: false}\n',
    );
  });
  afterAll(() => new Promise<void>((done) => server.close(() => done())));

  it('prints the most common reasons with counts; status shows them; a re-run says what is whose', async () => {
    const profile = join(tmp, 'failing.yaml');
    const dir = join(tmp, 'failing-shard');
    const first = await run(['crawl', '--profile', profile, '--ids', '1-9', '--out', dir, '--allow-private-network', '--quiet']);
    expect(first.code).toBe(3);
    expect(first.stdout).toMatch(/^shard: archived 4, missing 0, gone 0, restricted 0, failed 5; this run: ids 9, records \d+, bytes \d+, warcs 1\nleft: 5 IDs \(0 never attempted, 5 to retry\)\n$/);
    const host = url.replace('http://', '');
    expect(first.stderr).toContain('failed IDs by reason');
    expect(first.stderr).toContain(`  3 × http://${host}/…: HTTP 500\n`);
    expect(first.stderr).toContain(`  2 × unexpected HTTP 302 (host 127.0.0.2 is not in the profile's scope.hosts)\n`);
    expect(first.stderr.indexOf('3 ×')).toBeLessThan(first.stderr.indexOf('2 ×'));

    const status = await run(['status', dir]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`failed IDs by reason:\n  3 × http://${host}/…: HTTP 500\n  2 × unexpected HTTP 302`);
    const json = JSON.parse((await run(['status', dir, '--json'])).stdout) as { left: { failureReasons: { reason: string; count: number }[] } };
    expect(json.left.failureReasons).toEqual([
      { reason: `http://${host}/…: HTTP 500`, count: 3 },
      { reason: "unexpected HTTP 302 (host 127.0.0.2 is not in the profile's scope.hosts)", count: 2 },
    ]);

    // The platform recovers: the re-run retries the 5 failed IDs only; the shard's counts include the first run.
    fixed = true;
    const second = await run(['crawl', '--profile', profile, '--ids', '1-9', '--out', dir, '--allow-private-network', '--quiet']);
    expect(second.code).toBe(3);
    expect(second.stdout).toMatch(/^shard: archived 7, missing 0, gone 0, restricted 0, failed 2; this run: ids 5, records \d+, bytes \d+, warcs 1\nleft: 2 IDs \(0 never attempted, 2 to retry\)\n$/);
    expect(second.stderr).not.toContain('HTTP 500');
    expect(second.stderr).toContain('  2 × unexpected HTTP 302');
  });
  it('a node says why the IDs of an item failed, and tells the tracker too', async () => {
    fixed = false;
    const profile = join(tmp, 'failing.yaml');
    const projectFile = join(tmp, 'failing-project.yaml');
    await writeFile(projectFile, `name: failing\nprofile: ${profile}\nitem_size: 9\nlease_secs: 60\nmin_client_version: 0.1.0\n`);
    const db = `sqlite:${join(tmp, 'failing-tracker.sqlite')}`;
    const { seedCommand } = await import('../tracker/server/commands.js');
    const { serveTracker } = await import('../tracker/server/server.js');
    await seedCommand({ db, project: 'failing', ids: '1-9', itemSize: 9, create: true });
    const tracker = await serveTracker({ projectFile, db, port: 0, env: { LIFEBOAT_ADMIN_TOKEN: 'admin-token-for-the-refusals-test' }, logger: false });
    try {
      const r = await run(['node', '--tracker', tracker.url, '--nick', 'tired', '--out', join(tmp, 'failing-node'), '--allow-private-network', '--items', '1']);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/item \d+: 5 IDs failed \(3 × http:\/\/127\.0\.0\.1:\d+\/…: HTTP 500; 2 × unexpected HTTP 302 \(host 127\.0\.0\.2 is not in the profile's scope\.hosts\)\); returned 5-9 to the tracker/);
    } finally {
      await tracker.close();
    }
    const { default: Database } = await import('better-sqlite3');
    const trackerDb = new Database(join(tmp, 'failing-tracker.sqlite'), { readonly: true });
    try {
      const errors = trackerDb.prepare<[], { last_error: string | null }>('SELECT last_error FROM items').all().map((x) => x.last_error);
      expect(errors).toEqual([expect.stringMatching(/^5 IDs failed after all retries; most common: 3 × http:\/\/127\.0\.0\.1:\d+\/…: HTTP 500; 2 × unexpected HTTP 302/)]);
    } finally {
      trackerDb.close();
    }
  });
});

describe('the tracker, as a volunteer gets it wrong', () => {
  it('`node --tracker HOST:PORT` without a scheme is refused at once (exit 2) and creates nothing', async () => {
    const out = join(tmp, 'node-out');
    for (const tracker of ['127.0.0.1:8070', 'localhost:8070']) {
      const r = await run(['node', '--tracker', tracker, '--nick', 'tired', '--out', out]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`lifeboat: --tracker "${tracker}" is not an http(s) URL: write it with its scheme, e.g. http://${tracker}\n`);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('the client reports each failed attempt with the wait before the next', async () => {
    const closed = createNetServer();
    const port = await listen(closed);
    await new Promise<void>((done) => closed.close(() => done()));
    const retries: TrackerRetry[] = [];
    const client = new TrackerClient({ baseUrl: `http://127.0.0.1:${port}`, clientVersion: '0.1.0', retry: { maxAttempts: 3, baseDelayMs: 1 }, onRetry: (r) => retries.push(r) });
    await expect(client.register('tired')).rejects.toBeInstanceOf(TrackerUnavailableError);
    expect(retries.map((r) => [r.attempt, r.maxAttempts, r.path])).toEqual([
      [1, 3, '/api/v1/register'],
      [2, 3, '/api/v1/register'],
    ]);
    expect(retries[0]!.problem).toContain('ECONNREFUSED');
    expect(retries[0]!.waitMs).toBeGreaterThan(0);
  });

  it('an unreachable tracker: the node prints each retry, and Ctrl-C stops it (exit 1)', async () => {
    const closed = createNetServer();
    const port = await listen(closed);
    await new Promise<void>((done) => closed.close(() => done()));
    const child = spawn(process.execPath, [resolve('dist/scripts/cli/bin.js'), 'node', '--tracker', `http://127.0.0.1:${port}`, '--nick', 'tired', '--out', join(tmp, 'node-down')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    await new Promise<void>((done) => {
      child.stderr.on('data', (d) => {
        stderr += d;
        if (/attempt 2 of 8 failed/.test(stderr)) done();
      });
    });
    child.kill('SIGINT');
    expect(await exited).toBe(1);
    expect(stderr).toMatch(new RegExp(`tracker http://127\\.0\\.0\\.1:${port}/api/v1/register: connect ECONNREFUSED [^;]+; attempt 1 of 8 failed, next try in \\d+ s\\n`));
    expect(stderr).not.toMatch(STACK);
  });

  it('a port in use (`tracker serve`) is one line naming the address, exit 1, no stack', async () => {
    const busy = createNetServer();
    const port = await listen(busy);
    try {
      const file = join(tmp, 'ok-project.yaml');
      await writeFile(file, 'name: rescue\nprofile: demo\nitem_size: 10\nlease_secs: 60\nmin_client_version: 0.1.0\n');
      const r = await run(['tracker', 'serve', '--project', file, '--db', `sqlite:${join(tmp, 'busy.sqlite')}`, '--port', String(port), '--create'], {
        LIFEBOAT_ADMIN_TOKEN: 'a-long-enough-admin-token',
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`lifeboat: 127.0.0.1:${port} is already in use (another tracker?): stop it or choose another --port\n`);
    } finally {
      await new Promise<void>((done) => busy.close(() => done()));
    }
  });

  it('a missing --from-file is one line naming the file, exit 2, and no database is created', async () => {
    const db = join(tmp, 'seed.sqlite');
    const missing = join(tmp, 'missing-ranges.txt');
    const project = join(tmp, 'seed-project.yaml');
    await writeFile(project, 'name: rescue\nprofile: demo\n');
    const r = await run(['tracker', 'seed', '--project', project, '--from-file', missing, '--item-size', '10', '--db', `sqlite:${db}`, '--create']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(2); // one line
    expect(r.stderr).toContain(missing);
    expect(r.stderr).not.toMatch(STACK);
    expect(existsSync(db)).toBe(false);
    expect((await readdir(tmp)).filter((n) => n.startsWith('seed.sqlite'))).toEqual([]);
  });
});
