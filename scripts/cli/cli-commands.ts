import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { InputError } from '../../config/errors.js';
import type { Command } from 'commander';
import type { CliIo } from './cli-io.js';
import { progressLine, registerCurateCommands } from './cli-curate.js';
import { positiveInt } from './cli-options.js';
import { registerTrackerCommands } from './cli-tracker.js';

/** Commands beyond `crawl`, kept apart so cli.ts stays small. */
export function registerMoreCommands(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('demo')
    .description('start the bundled demo platform on 127.0.0.1, crawl it, verify the result and print the summary')
    .option('--posts <n>', 'posts on the demo platform', (v) => Number(v), 1000)
    .option('--out <dir>', 'shard directory', './demo-archive')
    .option('--chaos <rate>', 'fraction of requests that fail (5xx, resets, stalls, short bodies)', (v) => Number(v), 0)
    .option('--rate-limit <rps>', 'the platform answers 429 above this many requests per second', (v) => Number(v))
    .option('--json', 'machine-readable output')
    .action(async (o: { posts: number; out: string; chaos: number; rateLimit?: number; json?: boolean }) =>
      setExit(await (await import('./demo-command.js')).demoCommand({ ...o, out: resolve(o.out) }, io)),
    );

  program
    .command('verify')
    .description('re-read every record, recompute digests, check the shard DB points at real records')
    .argument('<paths...>', 'shard directories or WARC files')
    .option('--json', 'print the report as JSON')
    .option('--jobs <n>', 'files read and checked at once, one per core (default: the number of cores)', positiveInt('--jobs'))
    .action(async (paths: string[], o: { json?: boolean; jobs?: number }) => {
      // A path that is not there is a typo, not a defect of the archive: bad input, one line.
      const absent = paths.filter((p) => !existsSync(resolve(p)));
      if (absent.length > 0) throw new InputError(`no such file or directory: ${absent.join(', ')}`, { code: 'E_VERIFY_INPUT' });
      const [{ verifyPaths }, { lockHolder }, { nodeFolderOf }, { expandNodeFolders }] = await Promise.all([
        import('../../storage/curate/verify.js'),
        import('../../storage/shard/dir-lock.js'),
        import('../../storage/shard/shard-dir.js'),
        import('./node-folders.js'),
      ]);
      const inputs = await expandNodeFolders(paths.map((p) => resolve(p)), io);
      for (const p of inputs) {
        const holder = lockHolder(p);
        if (!holder) continue;
        const node = nodeFolderOf(p);
        const who = node ? `the node on ${node} is crawling this item (process ${holder.pid}, started ${holder.startedAt})` : `running — ${holder.command} by process ${holder.pid} (started ${holder.startedAt})`;
        io.stderr.write(`${p}: ${who}; its .open WARC is its own, not a defect, and is not read; what is final is checked now${node ? ' (verify the item again once the node has finished it)' : ` (verify again when the ${holder.command} ends)`}\n`);
      }
      const progress = progressLine(io, 'verify');
      const report = await verifyPaths(
        inputs,
        { ...(o.jobs ? { jobs: o.jobs } : {}), onProgress: (p) => progress(`${p.records} records, ${(p.bytes / 1e6).toFixed(0)} MB of files started; at ${p.file}`) },
      );
      progress.done();
      if (o.json) io.stdout.write(`${JSON.stringify(report)}\n`);
      else {
        for (const d of report.defects) io.stdout.write(`defect: ${d.file}${d.offset !== undefined ? ` @${d.offset}` : ''}: ${d.what}\n`);
        const types = Object.entries(report.counts.types).map(([t, n]) => `${t} ${n}`).join(', ');
        io.stdout.write(`${report.files} files, ${report.records} records (${types}), ${report.bytes} bytes, ${report.counts.dbRows} shard DB rows checked; ${report.defectCount} defects\n`);
      }
      setExit(report.defectCount > 0 ? 1 : 0);
    });

  registerCurateCommands(program, io, setExit);
  registerTrackerCommands(program, io, setExit);
}
