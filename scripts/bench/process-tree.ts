import { readdirSync, readFileSync } from 'node:fs';

/**
 * A process and its descendants as Linux's /proc shows them: used to measure the memory of the
 * crawler together with the Chromium processes it started, and to find a browser's pid (the
 * browser pool does not expose it). Outside Linux every function returns an empty answer.
 */
export interface ProcInfo {
  pid: number;
  ppid: number;
  /** Resident set size in bytes. */
  rssBytes: number;
  /** Proportional set size in bytes (shared pages divided among their users); 0 when unreadable. */
  pssBytes: number;
  /** The command line, arguments joined by spaces. */
  cmdline: string;
}

function readProc(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Field 2 (comm) may contain spaces and parentheses: parse after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(rest[1]);
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const rssKb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim();
    let pssKb = 0;
    try {
      pssKb = Number(/^Pss:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'))?.[1] ?? 0);
    } catch {
      // older kernels: no smaps_rollup
    }
    return { pid, ppid, rssBytes: rssKb * 1024, pssBytes: pssKb * 1024, cmdline };
  } catch {
    return undefined; // gone in between, or not Linux
  }
}

/** Every live descendant of `root` (children, grandchildren, ...), not `root` itself. */
export function descendants(root: number = process.pid): ProcInfo[] {
  let pids: number[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
  const all = pids.map(readProc).filter((p): p is ProcInfo => p !== undefined);
  const byParent = new Map<number, ProcInfo[]>();
  for (const p of all) byParent.set(p.ppid, [...(byParent.get(p.ppid) ?? []), p]);
  const out: ProcInfo[] = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const child of byParent.get(stack.pop()!) ?? []) {
      out.push(child);
      stack.push(child.pid);
    }
  }
  return out;
}

/**
 * Memory of `root` plus all its descendants, in bytes: `rss` sums each process's RSS (counts
 * pages Chromium's processes share once per process, so it overstates), `pss` sums PSS (shared
 * pages divided among their users: the better total).
 */
export function treeMemory(root: number = process.pid): { rss: number; pss: number } {
  const procs = [readProc(root), ...descendants(root)].filter((p): p is ProcInfo => p !== undefined);
  return { rss: procs.reduce((s, p) => s + p.rssBytes, 0), pss: procs.reduce((s, p) => s + p.pssBytes, 0) };
}

/** The top-level Chromium browser processes started by `root` (not their renderer/GPU/utility children). */
export function chromiumBrowserPids(root: number = process.pid): number[] {
  return descendants(root)
    .filter((p) => /chrom(e|ium)/i.test(p.cmdline) && !/--type=/.test(p.cmdline))
    .map((p) => p.pid);
}
