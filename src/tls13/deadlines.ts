/**
 * Per-connection deadlines (the first flight's, the handshake's, a closed
 * connection's linger) on one shared timer per duration instead of a
 * `setTimeout` each. Every deadline of one duration is due in the order it
 * was set, so they wait in a FIFO queue and one unref'd timer is armed for
 * the first one still live; cancelling only marks the entry. A connection
 * then costs a small object and an array slot, not a `Timeout` inserted in
 * (and, when its list empties, removed from) Node's timer lists, which is
 * what a handshake at a time costs with `setTimeout`/`clearTimeout`.
 *
 * @module
 */

/**
 * A pending deadline; {@link Deadline.cancel} it once it is no longer needed.
 * @example
 * ```ts
 * const d = deadline(10_000, () => socket.destroy());
 * socket.once('data', () => d.cancel());
 * ```
 */
export interface Deadline {
  /** The callback will not run (no effect once it ran). */
  cancel(): void;
}

class Entry implements Deadline {
  constructor(
    readonly at: number,
    public fire: (() => void) | undefined,
  ) {}

  cancel(): void {
    this.fire = undefined;
  }
}

/** The deadlines of one duration, due in the order they were set. */
class Queue {
  private entries: Entry[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Inside `sweep`: it arms the timer itself, for the first live entry. */
  private sweeping = false;

  constructor(private readonly ms: number) {}

  add(fire: () => void): Entry {
    const e = new Entry(performance.now() + this.ms, fire);
    this.entries.push(e);
    if (!this.timer && !this.sweeping) this.arm(this.ms);
    return e;
  }

  private arm(delay: number): void {
    this.timer = setTimeout(this.sweep, delay);
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    const now = performance.now();
    const q = this.entries;
    // A callback may set new deadlines of this duration (a handshake's
    // timeout starts a linger of the same length): they are pushed behind,
    // due later, and the timer is armed below for the first live entry, not
    // by `add` for the new one (which would make the entries before it late).
    this.sweeping = true;
    try {
      while (this.head < q.length) {
        const e = q[this.head]!;
        if (e.fire && e.at > now) break;
        this.head++;
        const fire = e.fire;
        e.fire = undefined;
        fire?.();
      }
    } finally {
      this.sweeping = false;
    }
    // Drop what was swept, at once when the queue is empty, else once it is half of it.
    if (this.head === q.length) {
      this.entries = [];
      this.head = 0;
    } else {
      if (this.head > 1024 && this.head * 2 > q.length) {
        this.entries = q.slice(this.head);
        this.head = 0;
      }
      if (!this.timer) this.arm(Math.max(1, this.entries[this.head]!.at - now));
    }
  };
}

const queues = new Map<number, Queue>();

/**
 * Run `fire` in `ms` milliseconds, unless cancelled first (see the module
 * documentation). The shared timer is unref'd: a deadline does not keep the
 * process alive (the socket it guards does). Like `setTimeout`, `fire`
 * runs no sooner than `ms` after this call.
 * @example
 * ```ts
 * const d = deadline(30_000, () => abort());
 * d.cancel();
 * ```
 */
export function deadline(ms: number, fire: () => void): Deadline {
  let q = queues.get(ms);
  if (!q) {
    q = new Queue(ms);
    queues.set(ms, q);
  }
  return q.add(fire);
}
