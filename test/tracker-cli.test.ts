import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../scripts/cli/cli.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'lifeboat-tracker-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: process.env });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('tracker seed/status through the CLI (issue 10 §5)', () => {
  const project = path.join(dir, 'project.yaml');
  const file = path.join(dir, 'tracker.sqlite');
  const db = `sqlite:${file}`;
  writeFileSync(project, 'name: rescue\nprofile: demo\nitem_size: 250\n');

  it('--project is the project file for seed and status; item_size comes from it; the first seed needs --create', async () => {
    const bare = await run(['tracker', 'seed', '--project', 'rescue', '--ids', '1-1000', '--db', db]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/--project rescue: no such project file \(--project takes the project file, e\.g\. project\.yaml, for serve, seed and status\)/);
    const missing = await run(['tracker', 'status', '--project', project, '--db', db]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/tracker database .*tracker\.sqlite does not exist/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(file)).toBe(false);
    const uncreated = await run(['tracker', 'seed', '--project', project, '--ids', '1-1000', '--db', db]);
    expect(uncreated.code).toBe(2);
    expect(uncreated.stderr).toMatch(/does not exist; check --db, or add --create to start project rescue/);
    const first = await run(['tracker', 'seed', '--project', project, '--ids', '1-1000', '--db', db, '--create']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^seeded 4 items \(1,000 IDs, up to 250 per item\) into project rescue/);
    const again = await run(['tracker', 'seed', '--project', project, '--ids', '500-1500', '--db', db]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/seeded 2 items \(500 IDs, up to 250 per item\).*; 501 IDs were already in the project/);
    const status = await run(['tracker', 'status', '--project', project, '--db', db]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/project rescue: 0 \/ 1,500 IDs done/);
    expect(status.stdout).toMatch(/IDs\/s over the last 300 s; no ETA \(nothing moving\)/);
    // A project file whose name the database does not hold: a typo, not a new project.
    const typo = path.join(dir, 'typo.yaml');
    writeFileSync(typo, 'name: rescu\nprofile: demo\n');
    const t = await run(['tracker', 'seed', '--project', typo, '--ids', '1-10', '--db', db]);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/project rescu is not in sqlite:.*\(it holds rescue\); check the name and --db, or add --create/);
    expect(readdirSync(dir).filter((n) => /-(wal|shm)$/.test(n))).toEqual([]);
  });

  it('seed --recheck missing queues held IDs again (issue 21); any other status is refused', async () => {
    const recheck = await run(['tracker', 'seed', '--project', project, '--ids', '1401-1500', '--recheck', 'missing', '--db', db]);
    expect(recheck.code, recheck.stderr).toBe(0);
    expect(recheck.stdout).toMatch(/^queued 100 IDs in 1 recheck items of project rescue/);
    const status = await run(['tracker', 'status', '--project', project, '--db', db]);
    expect(status.stdout).toMatch(/project rescue: 0 \/ 1,500 IDs done/); // not counted twice
    const bad = await run(['tracker', 'seed', '--project', project, '--ids', '1-10', '--recheck', 'archived', '--db', db]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--recheck archived: only "missing" can be asked again/);
  });
});
