/**
 * Entry point of a `serve` worker process (forked by the primary in
 * src/front/workers.ts through node:cluster).
 *
 * @module
 */
import { runWorker } from './workers.js';

await runWorker();
