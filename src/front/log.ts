/**
 * The front end's structured logs. The sink type and the two stock sinks live
 * in `src/log/` (the bottom layer) so `keyless/` can log without importing the
 * front end; this module re-exports them under their old path.
 *
 * @module
 */
export { type JsonLinesOptions, type JsonLinesSink, type LogSink, jsonLines, silent } from '../log/log.js';
