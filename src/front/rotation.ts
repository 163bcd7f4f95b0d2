/**
 * Starting a config's `rotation` section: one place for `serve`
 * (src/front/serve.ts) and the workers primary (src/front/workers.ts, which
 * runs it once for all workers). Internal: not re-exported by
 * `ech-server/front`.
 *
 * @module
 * @internal
 */
import { keyManagerOptions } from '../dns/rotation-config.js';
import { EchKeyManager } from '../keys/manager.js';
import { ServeConfigError, type ServeConfig } from './config.js';
import type { LogSink } from './log.js';

/**
 * The key manager of a config's `rotation` section, checked and started:
 * one place for `serve` and the workers primary (which runs it once for
 * all workers).
 * @internal
 * @throws ServeConfigError (`rotation.publisher`) when the publisher's
 * credentials check fails.
 * @example
 * ```ts
 * const manager = config.rotation ? await startRotation(config, log) : undefined;
 * ```
 */
export async function startRotation(config: ServeConfig, log: LogSink): Promise<EchKeyManager> {
  const manager = await EchKeyManager.open(keyManagerOptions(config.rotation!, config.keys));
  // Fail loudly at start on wrong credentials (a TSIG-signed SOA query),
  // not silently at the next rotation a period later.
  try {
    await manager.check();
  } catch (e) {
    const err = e as Error & { code?: string };
    throw new ServeConfigError('rotation.publisher', `the publisher check failed: ${err.code ? `${err.code}: ` : ''}${err.message}`);
  }
  manager.on('publishError', (e: Error) => log({ event: 'publish_failed', error: e.message }));
  manager.on('stepError', (e: Error) => log({ event: 'rotation_step_failed', error: e.message }));
  const first = await manager.start();
  log({ event: 'rotation_started', created: first.created, error: first.error ? String(first.error) : undefined });
  return manager;
}
