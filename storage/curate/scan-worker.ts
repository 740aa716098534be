/**
 * A scan worker thread (scan-files.ts ScanPool): runs one task at a time, sends its events in
 * batches and waits for credit (an `ack` per batch the main thread has taken).
 */
import { parentPort } from 'node:worker_threads';
import { runScanTask, type FromScanWorker, type ScanTask, type ToScanWorker } from './scan-files.js';

const port = parentPort!;
const tasks: { id: number; task: ScanTask }[] = [];
let current = 0;
let credits = 0;
let waiting: (() => void) | undefined;
let running = false;

async function credit(): Promise<void> {
  while (credits === 0) await new Promise<void>((r) => (waiting = r));
  credits--;
}

async function drain(): Promise<void> {
  if (running) return;
  running = true;
  while (tasks.length > 0) {
    const { id, task } = tasks.shift()!;
    current = id;
    credits = 0;
    try {
      await runScanTask(task, (m, transfer) => port.postMessage(m, transfer), credit);
      credits = 0;
      port.postMessage({ type: 'end' } satisfies FromScanWorker);
    } catch (err) {
      credits = 0;
      port.postMessage({ type: 'fail', message: (err as Error).message } satisfies FromScanWorker);
    }
  }
  running = false;
}

port.on('message', (m: ToScanWorker) => {
  if (m.type === 'ack') {
    if (m.id !== current) return;
    credits++;
    const w = waiting;
    waiting = undefined;
    w?.();
  } else {
    tasks.push({ id: m.id, task: m.task });
    void drain();
  }
});
