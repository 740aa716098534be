/**
 * A fixed-window request budget per client address (issue 11 §5). @fastify/rate-limit keeps the
 * per-token budget; it holds one key per request, so it cannot also charge the address behind
 * the token. This budget does: every request from an address counts, whatever token it carries,
 * so registering five tokens does not buy five budgets. Also used, with its own window, for
 * registrations per address. In memory, per tracker process (as the per-token budget is).
 */
export class AddressBudget {
  readonly max: number;
  readonly windowMs: number;
  readonly #now: () => number;
  readonly #windows = new Map<string, { start: number; count: number }>();

  constructor(options: { max: number; windowMs: number; now?: () => number }) {
    this.max = options.max;
    this.windowMs = options.windowMs;
    this.#now = options.now ?? Date.now;
  }

  /** Charges one request to `address`: 0 when within the budget, else ms until the window resets. */
  take(address: string): number {
    const t = this.#now();
    let w = this.#windows.get(address);
    if (!w || t - w.start >= this.windowMs || t < w.start) {
      if (this.#windows.size >= 100_000) this.#prune(t);
      w = { start: t, count: 0 };
      this.#windows.set(address, w);
    }
    w.count++;
    return w.count > this.max ? Math.max(1, w.start + this.windowMs - t) : 0;
  }

  #prune(t: number): void {
    for (const [k, w] of this.#windows) if (t - w.start >= this.windowMs) this.#windows.delete(k);
    if (this.#windows.size >= 100_000) this.#windows.clear(); // a flood from more addresses than this: start over
  }
}
