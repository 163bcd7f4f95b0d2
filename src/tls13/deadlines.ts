/**
 * Per-connection deadlines (the first flight's, the handshake's, a closed
 * connection's linger) on one shared timer per duration instead of a
 * `setTimeout` each. Every deadline of one duration is due in the order it
 * was set, so they wait in a FIFO queue and one unref'd timer is armed for
 * the first one; a cancelled deadline leaves the queue at once (a doubly
 * linked list: a few stores), so the queue holds only the live ones. A
 * connection then costs a small object, not a `Timeout` inserted in (and,
 * when its list empties, removed from) Node's timer lists, which is what a
 * handshake at a time costs with `setTimeout`/`clearTimeout`.
 *
 * Nearly every deadline is cancelled within milliseconds (the first flight
 * arrives, the handshake completes, the peer's FIN comes) while it would
 * fall due seconds later: a queue that kept cancelled entries until then
 * held some 45,000 of them at 1,000 handshakes/s (10 s, 30 s and 5 s
 * deadlines), each one surviving the scavenges and promoted to the old
 * generation, and the queue's array grown and copied to match.
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
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;
  constructor(
    readonly queue: Queue,
    readonly at: number,
    public fire: (() => void) | undefined,
  ) {}

  cancel(): void {
    if (this.fire === undefined) return;
    this.fire = undefined;
    this.queue.unlink(this);
  }
}

/** The deadlines of one duration, due in the order they were set: a doubly linked list. */
class Queue {
  private head: Entry | undefined;
  private tail: Entry | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Inside `sweep`: it arms the timer itself, for the first live entry. */
  private sweeping = false;

  constructor(private readonly ms: number) {}

  add(fire: () => void): Entry {
    const e = new Entry(this, performance.now() + this.ms, fire);
    const t = this.tail;
    e.prev = t;
    if (t) t.next = e;
    else this.head = e;
    this.tail = e;
    if (!this.timer && !this.sweeping) this.arm(this.ms);
    return e;
  }

  /** Take `e` out of the list (cancelled, or about to fire). */
  unlink(e: Entry): void {
    const { prev, next } = e;
    if (prev) prev.next = next;
    else this.head = next;
    if (next) next.prev = prev;
    else this.tail = prev;
    e.prev = undefined;
    e.next = undefined;
  }

  private arm(delay: number): void {
    this.timer = setTimeout(this.sweep, delay);
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    const now = performance.now();
    // A callback may set new deadlines of this duration (a handshake's
    // timeout starts a linger of the same length): they are appended, due
    // later, and the timer is armed below for the first entry, not by `add`
    // for the new one (which would make the entries before it late).
    this.sweeping = true;
    try {
      for (let e = this.head; e && e.at <= now; e = this.head) {
        const fire = e.fire;
        e.fire = undefined;
        this.unlink(e);
        fire?.();
      }
    } finally {
      this.sweeping = false;
    }
    // The timer is left armed when the first entry is cancelled: it finds
    // the next one here, or nothing.
    if (this.head && !this.timer) this.arm(Math.max(1, this.head.at - now));
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
