#!/usr/bin/env node
/**
 * The installed `lifeboat` command (package.json "bin"). It always runs the CLI: npm links it as
 * `node_modules/.bin/lifeboat`, so a "am I the main module?" test against `process.argv[1]` (the
 * link's path) would silently do nothing. `main()` stays importable from cli.ts for tests.
 */
import { main } from './cli.js';

process.exitCode = await main(process.argv.slice(2));
