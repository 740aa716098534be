#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { InputError, LifeboatError, errorMessage } from '../../config/errors.js';
import { builtinProfileNames } from '../../config/builtin-profiles.js';
import { VERSION } from '../../config/version.js';
import { DISK_FULL_MESSAGE, isDiskFull } from '../../storage/shard/disk-full.js';
import { endQuietlyOnClosedPipe, processIo, type CliIo } from './cli-io.js';
import { registerMoreCommands } from './cli-commands.js';
import { EXIT, ExitCode } from './cli-options.js';
import { addCrawlFlags } from './crawl-flags.js';
import { crawlCommand, type CrawlCommandOptions } from './crawl-command.js';
import { MAX_PROBE_IDS, probeCommand, type ProbeCommandOptions } from './probe-command.js';

export function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('lifeboat')
    .description('Rescue the public posts of a platform into standard WARC files.')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError();

  const crawl = program
    .command('crawl')
    .description('archive a range of post IDs into a shard directory (resumes when run again)')
    .requiredOption('--profile <name|file>', `built-in profile name (${builtinProfileNames().join(', ')}) or a YAML/JSON file`)
    .requiredOption('--ids <ranges>', 'ID ranges in the profile codec, e.g. 1-1000,5000-6000 or 1-latest')
    .requiredOption('--out <dir>', 'shard directory');
  addCrawlFlags(crawl, 'crawl').action(async (o: CrawlCommandOptions) => setExit(await crawlCommand(o, io)));

  program
    .command('probe')
    .description('try a profile on a few IDs: what each capture fetched, the status and why, fields, media, notes (nothing is kept)')
    .requiredOption('--profile <name|file>', 'built-in profile name or a YAML/JSON file')
    .requiredOption('--ids <ranges>', `a few IDs in the profile codec, e.g. 1-20,134 or latest (at most ${MAX_PROBE_IDS})`)
    .option('--base-url <url>', "override the profile's base_url")
    .option('--allow-private-network', 'allow loopback and private addresses (the demo and tests)')
    .option('--json', 'one JSON object per ID per line')
    .action(async (o: ProbeCommandOptions) => setExit(await probeCommand(o, io)));

  registerMoreCommands(program, io, setExit);
  return program;
}

/**
 * An error from the operating system (it has a `syscall`): the user's machine or the path they
 * gave, not a bug, so one line and no stack. A path that does not exist is bad input (exit 2);
 * the rest — a port in use, no permission, a full disk — is the environment (exit 1).
 */
function systemError(err: unknown): { message: string; code: number } | undefined {
  if (!(err instanceof Error) || err instanceof LifeboatError) return undefined;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (typeof e.code !== 'string' || typeof e.syscall !== 'string') return undefined;
  if (e.code === 'EADDRINUSE') {
    return { message: `${e.address ?? 'the address'}:${e.port ?? '?'} is already in use (another tracker?): stop it or choose another --port`, code: EXIT.error };
  }
  const what = e.path ?? (e.address ? `${e.address}${e.port ? `:${e.port}` : ''}` : undefined);
  const reason = { ENOENT: 'no such file or directory', ENOTDIR: 'not a directory', EISDIR: 'is a directory', EACCES: 'permission denied', EPERM: 'operation not permitted', ENOSPC: 'no space left on the device', EROFS: 'read-only file system' }[e.code];
  const message = `${what ? `${what}: ` : ''}${reason ?? e.message} (${e.code}, ${e.syscall})`;
  return { message, code: ['ENOENT', 'ENOTDIR', 'EISDIR'].includes(e.code) ? EXIT.usage : EXIT.error };
}

/** Runs the CLI in-process; returns the exit code. Only this layer turns errors into exit codes. */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  let code: number = EXIT.ok;
  if (io === processIo) endQuietlyOnClosedPipe();
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof ExitCode) return err.code;
    // `--help` and `--version` end with exit code 0; help shown because a command is missing
    // (`lifeboat`, `lifeboat tracker`) ends with 1 from commander, which is bad usage here.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (!(err instanceof LifeboatError) && isDiskFull(err)) {
      // A full disk noticed outside the storage layer (a lock or temp file): the same one line as everywhere.
      io.stderr.write(`lifeboat: ${DISK_FULL_MESSAGE} (${errorMessage(err)})\n`);
      return EXIT.error;
    }
    const system = systemError(err);
    if (system) {
      io.stderr.write(`lifeboat: ${system.message}\n`);
      return system.code;
    }
    io.stderr.write(`lifeboat: ${errorMessage(err)}\n`);
    if (err instanceof InputError) return EXIT.usage;
    if (err instanceof LifeboatError) return EXIT.error;
    if (!(err instanceof Error)) return EXIT.error;
    // Only a bug gets here: the stack is for its report.
    io.stderr.write(`${err.stack ?? ''}\n`);
    return EXIT.error;
  }
}

// `node dist/scripts/cli/cli.js …` still runs the CLI (tests and scripts spawn it); the installed
// command goes through bin.js, which always runs. Real paths: argv[1] may be a symlink.
if (process.argv[1] && realpathSync(fileURLToPath(import.meta.url)) === realpathOrSelf(process.argv[1])) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
