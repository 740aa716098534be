import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../../config/errors.js';
import { cliLogger, gracefulInterrupt, progressReporter, type CliIo } from './cli-io.js';
import { positiveInt } from './cli-options.js';
import { addCrawlFlags, capsFrom, crawlFlagsFrom, type CrawlFlagValues } from './crawl-flags.js';

/**
 * `--project` is the project file for serve, seed and status alike (issue 10 §5). A bare name
 * (the old meaning for seed/status) is refused with a hint instead of being read as a path.
 */
async function projectFromFlag(value: string) {
  const file = resolve(value);
  if (!existsSync(file)) {
    const hint = /^[a-z0-9-]+$/.test(value) ? ' (--project takes the project file, e.g. project.yaml, for serve, seed and status)' : '';
    throw new InputError(`--project ${value}: no such project file${hint}`, { code: 'E_PROJECT_FILE' });
  }
  const { loadProjectFile } = await import('../../tracker/store/project.js');
  return loadProjectFile(file);
}

async function readRangesFile(path: string, flag = '--from-file'): Promise<string> {
  try {
    return await readFile(resolve(path), 'utf8');
  } catch (err) {
    throw new InputError(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { code: 'E_USAGE', cause: err });
  }
}

/** A ranges or URL file with nothing in it but blank lines and `#` comments (an empty missing-ranges.txt: the merge found nothing missing). */
function nothingIn(text: string): boolean {
  return text.split(/\r?\n/).every((line) => line.replace(/#.*$/, '').trim() === '');
}

/** `lifeboat tracker serve|seed|status` and `lifeboat node`. */
export function registerTrackerCommands(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const tracker = program.command('tracker').description('the coordination server that hands ID ranges to volunteer nodes');
  tracker
    .command('serve')
    .description('serve a project over HTTP (JSON API, leaderboard at /, /metrics, /openapi.json)')
    .requiredOption('--project <file>', 'project file (YAML or JSON)')
    .option('--db <url>', 'sqlite:PATH or postgres://…', 'sqlite:tracker.sqlite')
    .option('--port <n>', 'port', (v) => Number(v), 8070)
    .option('--host <addr>', 'address to bind (default 127.0.0.1, this machine only; 0.0.0.0 for volunteers elsewhere)', '127.0.0.1')
    .option('--base-url <url>', "override the profile's base_url (the project's follow polls; its port is one reported media may name)")
    .option('--allow-private-network', 'let follow polls reach loopback and private addresses (demo and tests)')
    .option('--create', 'start the project if the database does not hold it yet (otherwise a misspelt --db is refused)')
    .action(async (o: { project: string; db: string; port: number; host: string; baseUrl?: string; allowPrivateNetwork?: boolean; create?: boolean }) => {
      const project = await projectFromFlag(o.project);
      const [{ serveTracker }, { loadProfile }, { discoverMaxId }, { checkServeDb }] = await Promise.all([import('../../tracker/server/server.js'), import('../../config/profile.js'), import('../../crawler/run/discover.js'), import('../../tracker/server/commands.js')]);
      await checkServeDb({ db: o.db, project: project.name, create: !!o.create });
      // A project with `follow` polls its profile's ids.discover (issue 14); built here: the tracker never imports the crawler.
      const discoverFor = (profileName: string) => {
        const profile = loadProfile(profileName, o.baseUrl ? { baseUrl: o.baseUrl } : {});
        return () => discoverMaxId(profile, { allowPrivateNetwork: !!o.allowPrivateNetwork });
      };
      const running = await serveTracker({ projectFile: resolve(o.project), db: o.db, port: o.port, host: o.host, env: io.env, logger: { level: 'warn' }, discoverFor, ...(o.baseUrl ? { baseUrl: o.baseUrl } : {}) });
      io.stdout.write(`tracker listening on ${running.url}\n`);
      await new Promise<void>((done) => {
        const remove = io.onInterrupt?.(() => {
          remove?.();
          done();
        });
        if (!io.onInterrupt) done();
      });
      await running.close();
      setExit(0);
    });
  tracker
    .command('seed')
    .description('add ID ranges to a project as items (from --ids or a merge’s missing-ranges.txt); IDs already in the project are skipped')
    .requiredOption('--project <file>', 'project file (YAML or JSON), as for serve; the project name is read from it')
    .option('--ids <ranges>', 'ID ranges, e.g. 1-1000000')
    .option('--from-file <file>', 'a file of ranges, one per line (missing-ranges.txt)')
    .option('--media-from-file <file>', 'a file of media URLs, one per line (a merge’s missing-media.txt): queued as media items again')
    .option('--item-size <n>', 'IDs per item (default: item_size in the project file)', positiveInt('--item-size'))
    .option('--create', 'start the project if the database does not hold it yet (the first seed)')
    .option('--recheck <status>', 'with --ids/--from-file: queue these IDs to be asked again even though the project holds them (only: missing), e.g. posts that answered 404 before they were readable')
    .option('--db <url>', 'sqlite:PATH or postgres://…', 'sqlite:tracker.sqlite')
    .action(async (o: { project: string; ids?: string; fromFile?: string; mediaFromFile?: string; itemSize?: number; create?: boolean; recheck?: string; db: string }) => {
      if ([o.ids, o.fromFile, o.mediaFromFile].filter((v) => v !== undefined).length !== 1) {
        throw new InputError('give exactly one of --ids, --from-file or --media-from-file', { code: 'E_USAGE' });
      }
      if (o.recheck !== undefined && o.recheck !== 'missing') throw new InputError(`--recheck ${o.recheck}: only "missing" can be asked again (e.g. --recheck missing --ids 1000-2000)`, { code: 'E_USAGE' });
      if (o.recheck !== undefined && o.mediaFromFile) throw new InputError('--recheck takes post IDs (--ids or --from-file), not --media-from-file', { code: 'E_USAGE' });
      const project = await projectFromFlag(o.project);
      if (o.mediaFromFile) {
        const text = await readRangesFile(o.mediaFromFile, '--media-from-file');
        if (nothingIn(text)) {
          io.stdout.write(`--media-from-file ${o.mediaFromFile} holds no media URLs: nothing to seed\n`);
          setExit(0);
          return;
        }
        const { seedMediaCommand } = await import('../../tracker/server/commands.js');
        const r = await seedMediaCommand({ db: o.db, project, text, file: o.mediaFromFile, create: !!o.create });
        io.stdout.write(`${r.summary}\n`);
        setExit(0);
        return;
      }
      const ids = o.ids ?? (await readRangesFile(o.fromFile!));
      if (o.fromFile && nothingIn(ids)) {
        io.stdout.write(`--from-file ${o.fromFile} holds no ID ranges: nothing to seed\n`);
        setExit(0);
        return;
      }
      const { seedCommand } = await import('../../tracker/server/commands.js');
      const r = await seedCommand({ db: o.db, project: project.name, ids, itemSize: o.itemSize ?? project.item_size, create: !!o.create, ...(o.recheck ? { recheck: true } : {}) });
      io.stdout.write(`${r.summary}\n`);
      setExit(0);
    });
  tracker
    .command('status')
    .description('project totals and leaderboard')
    .requiredOption('--project <file>', 'project file (YAML or JSON), as for serve; the project name is read from it')
    .option('--db <url>', 'sqlite:PATH or postgres://…', 'sqlite:tracker.sqlite')
    .option('--json', 'JSON output')
    .action(async (o: { project: string; db: string; json?: boolean }) => {
      const project = await projectFromFlag(o.project);
      const { statusCommand } = await import('../../tracker/server/commands.js');
      const r = await statusCommand({ db: o.db, project: project.name });
      io.stdout.write(o.json ? `${JSON.stringify(r.stats)}\n` : `${r.summary}\n`);
      setExit(0);
    });

  const node = program
    .command('node')
    .description('volunteer: claim ID ranges from a tracker, archive them, report back; Ctrl-C gives the rest back')
    .requiredOption('--tracker <url>', 'the tracker’s URL')
    .requiredOption('--nick <name>', 'your name on the leaderboard')
    .requiredOption('--out <dir>', 'where shards are kept (one per item)')
    .option('--items <n>', 'stop after this many items', positiveInt('--items'))
    .option('--exit-when-idle', 'stop when the tracker has nothing to hand out right now')
    .option('--only <kind>', 'take only post items (little bandwidth) or only media items (a big pipe): posts | media')
    .option('--heartbeat-secs <n>', 'seconds between heartbeats (default: a third of the lease)', positiveInt('--heartbeat-secs'));
  addCrawlFlags(node, 'node')
    .action(async (o: CrawlFlagValues & { tracker: string; nick: string; out: string; items?: number; exitWhenIdle?: boolean; only?: string; heartbeatSecs?: number }) => {
      if (o.only !== undefined && o.only !== 'posts' && o.only !== 'media') throw new InputError(`--only ${o.only}: use posts or media`, { code: 'E_USAGE' });
      const interrupt = gracefulInterrupt(io, 'finishing the IDs in flight, then giving the rest of the item back');
      try {
        const { runNode } = await import('../../node/loop.js');
        const logger = cliLogger(io, { json: !!o.json, quiet: !!o.quiet });
        const caps = await capsFrom(o, resolve(o.out), logger);
        const { node: nodeNameFlag, ...crawlFlags } = crawlFlagsFrom(o, io.env, o.nick);
        const r = await runNode({
          ...crawlFlags,
          trackerUrl: o.tracker,
          nick: o.nick,
          outDir: resolve(o.out),
          logger,
          nodeName: nodeNameFlag,
          ...(o.baseUrl ? { baseUrl: o.baseUrl } : {}),
          ...(o.items ? { maxItems: o.items } : {}),
          ...(o.exitWhenIdle ? { exitWhenDone: true } : {}),
          ...(o.only ? { only: o.only as 'posts' | 'media' } : {}),
          ...(o.heartbeatSecs ? { heartbeatMs: o.heartbeatSecs * 1000 } : {}),
          ...(caps ? { caps } : {}),
          onProgress: progressReporter(io, { json: !!o.json, quiet: !!o.quiet, signal: interrupt.signal, ...(caps ? { caps: () => caps.describe() } : {}) }),
          signal: interrupt.signal,
        });
        const c = r.counts;
        const media = Object.entries(c).filter(([k]) => k.startsWith('media_') && k !== 'media_missing' && k !== 'media_gone').map(([k, v]) => `${k.slice(6)} ${v}`);
        const items = `items ${r.items}${r.stoppedItem !== undefined ? ` finished, item ${r.stoppedItem} stopped part-way (what it saved counts here, the rest was given back)` : ''}`;
        io.stdout.write(o.json ? `${JSON.stringify(r)}\n` : `${items}; archived ${c.archived}, missing ${c.missing}, gone ${c.gone}, restricted ${c.restricted}, failed ${c.failed}${media.length ? `; media URLs ${media.join(', ')}` : ''}\n`);
        setExit(r.interrupted ? 1 : (c.failed ?? 0) > 0 ? 3 : 0);
      } finally {
        interrupt.dispose();
      }
    });
}
