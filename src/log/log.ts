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
 * A sink writing JSON lines to a stream (default stderr).
 * @group Front end
 * @example
 * ```ts
 * const log = jsonLines(process.stdout);
 * log({ event: 'listening', port: 443 });
 * ```
 */
export function jsonLines(stream: { write(s: string): unknown } = process.stderr): LogSink {
  return (event) => {
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  };
}

/** A sink that drops everything. @group Front end */
export const silent: LogSink = () => undefined;
