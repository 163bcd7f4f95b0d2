/**
 * Structured logs: one JSON object per line. Secrets never appear; inner
 * server names only when the operator enables them.
 *
 * @module
 */

/**
 * A log sink: receives one event object.
 * @group Front end
 */
export type LogSink = (event: Record<string, unknown>) => void;

/**
 * Options of {@link jsonLines}.
 * @group Front end
 */
export interface JsonLinesOptions {
  /**
   * Gather the lines logged during one turn of the event loop and write
   * them with one `write` at the end of that turn (a `setImmediate`), or
   * sooner once 64 KiB are waiting. Lines still waiting when the process
   * exits (`process.exit()`, the loop running empty, an uncaught exception)
   * are written synchronously from the process's `exit` event; a sink
   * created on `process.stderr` or `process.stdout` writes synchronously
   * there (files and pipes), so no line is lost at exit. Only a kill that
   * the process cannot handle (SIGKILL) can lose the lines of the turn in
   * progress. Default false: each line is written when it is logged.
   */
  batch?: boolean;
}

/**
 * The sink {@link jsonLines} returns: a {@link LogSink} that can also be
 * flushed on demand (a no-op unless `batch`).
 * @group Front end
 */
export type JsonLinesSink = LogSink & {
  /** Write the lines still waiting now (e.g. before a line on another stream that must come after them). */
  flush(): void;
};

/** Buffered bytes (approximately: UTF-16 code units) that force a write before the end of the turn. */
const BATCH_LIMIT = 64 * 1024;

let isoSecond = Number.NaN;
let isoPrefix = '';
/**
 * `new Date().toISOString()`, with the date and time up to the second made
 * once a second (a `Date` and its formatting cost a few µs per line in a
 * busy server; the milliseconds are appended).
 */
function isoNow(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== isoSecond) {
    const iso = new Date(now).toISOString();
    // `YYYY-MM-DDTHH:MM:SS.` ; outside years 0 to 9999 the format differs: no cache.
    if (iso.length !== 24) return iso;
    isoSecond = second;
    isoPrefix = iso.slice(0, 20);
  }
  const ms = now - second * 1000;
  return `${isoPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`;
}

/**
 * One JSON line for `{ time, ...event }`: byte for byte what
 * `JSON.stringify({ time: new Date().toISOString(), ...event })` gives,
 * without building the merged object (a log line per handshake is on the
 * hot path): the event's own JSON with the time put in front.
 */
function line(event: Record<string, unknown>): string {
  const time = isoNow();
  if (!('time' in event)) {
    const j = JSON.stringify(event);
    if (j.length === 2) return `{"time":"${time}"}\n`;
    const c = j.charCodeAt(2);
    // An array-index key sorts before `time` in the merged object: leave
    // that (never seen) case to the obviously identical path.
    if (c < 48 || c > 57) return `{"time":"${time}",${j.slice(1)}\n`;
  }
  return `${JSON.stringify({ time, ...event })}\n`;
}

/**
 * A sink writing JSON lines to a stream (default stderr).
 * @group Front end
 * @example
 * ```ts
 * const log = jsonLines(process.stdout);
 * log({ event: 'listening', port: 443 });
 * const batched = jsonLines(process.stderr, { batch: true }); // one write per event-loop turn
 * ```
 */
export function jsonLines(stream: { write(s: string): unknown } = process.stderr, options: JsonLinesOptions = {}): JsonLinesSink {
  if (!options.batch) return Object.assign((event: Record<string, unknown>) => void stream.write(line(event)), { flush: () => undefined });
  let pending = '';
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    unflushed.delete(flush);
    if (pending === '') return;
    const s = pending;
    pending = '';
    stream.write(s);
  };
  const sink = (event: Record<string, unknown>) => {
    pending += line(event);
    if (pending.length >= BATCH_LIMIT) return flush();
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
    unflushed.add(flush);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', flushAll);
    }
  };
  return Object.assign(sink, { flush });
}

/** Flush functions of batching sinks holding lines not yet written. */
const unflushed = new Set<() => void>();
let exitHook = false;

/** At exit: write every line still waiting, synchronously for stderr and stdout. */
function flushAll(): void {
  exitHook = false;
  for (const f of [...unflushed]) f();
}

/** A sink that drops everything. @group Front end */
export const silent: LogSink = () => undefined;
