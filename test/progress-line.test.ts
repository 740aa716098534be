import { describe, expect, it } from 'vitest';
import { progressLine, progressReporter } from '../scripts/cli/cli-io.js';
import { CrawlStats } from '../crawler/fetch/crawl-stats.js';

/** The live progress line (issue 10 §6): never wraps, shows retries, says when it is stopping. */
const busy = {
  archived: 812_345,
  failed: 1_234,
  done: 1_234_567,
  total: 10_000_000,
  bytes: 123 * 1024 ** 3,
  throttles: 45_678,
  retries: 98_765,
  errors: 4_321,
  ids_per_sec: 1234.5,
  mb_per_sec: 98.76,
  eta_secs: 7_106,
};

describe('progressLine', () => {
  it('fits 80 columns (79 characters: a terminal may wrap at the last one) and keeps the most important fields', () => {
    const line = progressLine(busy, { columns: 80 });
    expect(line.length).toBeLessThanOrEqual(79);
    expect(line).toMatch(/^1234567\/10000000 IDs 12% {2}ETA 1h58m {2}1234\.5\/s/);
    expect(line).toContain('failed 1234');
    expect(line).toContain('retries 98765');
    // What goes first when space is short: total bytes and MB/s before the counters of trouble.
    expect(line).not.toContain('GiB');
  });

  it('shows every field when there is room, in a fixed order', () => {
    const line = progressLine(busy, { columns: 200 });
    expect(line).toBe('1234567/10000000 IDs 12%  ETA 1h58m  1234.5/s  98.76 MB/s  123.0 GiB  retries 98765  429s 45678  failed fetches 4321  failed 1234');
  });

  it('drops fields one by one as the terminal narrows, never wider than it', () => {
    let previous = Infinity;
    for (let columns = 130; columns >= 2; columns--) {
      const line = progressLine(busy, { columns });
      expect(line.length, `${columns} columns: ${line}`).toBeLessThan(columns);
      expect(line.split('  ').length).toBeLessThanOrEqual(previous);
      previous = line.split('  ').length;
      // The first field stays; on a very narrow terminal, cut with an ellipsis.
      const first = '1234567/10000000 IDs 12%';
      expect(line.startsWith(first) || first.startsWith(line.replace(/…$/, ''))).toBe(true);
    }
    expect(progressLine(busy, { columns: 40 })).toBe('1234567/10000000 IDs 12%  ETA 1h58m');
    expect(progressLine(busy, { columns: 12 })).toBe('1234567/10…');
  });

  it('says "stopping…" instead of an ETA after Ctrl-C', () => {
    const line = progressLine(busy, { columns: 80, stopping: true });
    expect(line).toContain('stopping…');
    expect(line).not.toContain('ETA');
  });

  it('the reporter writes the fitted line on a terminal and "stopping…" once the signal is aborted', () => {
    const written: string[] = [];
    const controller = new AbortController();
    const report = progressReporter({ stdout: { write: () => true }, stderr: { write: (s: string) => written.push(s), isTTY: true, columns: 60 }, env: {} }, { json: false, quiet: false, signal: controller.signal });
    const stats = new CrawlStats();
    stats.total = 1000;
    stats.retries = 17;
    report(stats);
    controller.abort();
    report(stats);
    const lines = written.map((s) => s.replace('\r\x1b[2K', ''));
    expect(lines.every((l) => l.length < 60)).toBe(true);
    expect(lines[0]).toContain('retries 17');
    // No rate yet: no ETA rather than "ETA ?" (issue 22 §1).
    expect(lines[0]).not.toContain('ETA');
    expect(lines[1]).toContain('stopping…');
  });
});

describe('progressLine with caps (issue 14)', () => {
  it('shows the caps on a wide terminal, and drops them before the ETA and the rate on a narrow one', () => {
    const caps = 'disk 1.20/50.0 GiB, 0.5/8 h, ≤ 20.0 MiB/s';
    expect(progressLine(busy, { columns: 200, caps })).toContain(`caps: ${caps}`);
    const narrow = progressLine(busy, { columns: 80, caps });
    expect(narrow.length).toBeLessThanOrEqual(79);
    expect(narrow).toMatch(/ETA 1h58m {2}1234\.5\/s/);
    expect(progressLine(busy, { columns: 200 })).not.toContain('caps:');
  });

  it('the reporter asks for the caps each time it writes', () => {
    const lines: string[] = [];
    let n = 0;
    const report = progressReporter({ stdout: { write: () => true }, stderr: { write: (s: string) => lines.push(s), isTTY: true, columns: 300 }, env: {} }, { json: false, quiet: false, caps: () => `disk ${++n}` });
    const stats = new CrawlStats();
    report(stats);
    report(stats);
    expect(lines.join('')).toMatch(/caps: disk 1[\s\S]*caps: disk 2/);
  });
});
