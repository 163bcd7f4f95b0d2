// GREASE ECH (RFC 9849 §6.2) carries a random config_id. About once in 256
// connections it equals a config_id the server holds: the server then tries
// that key, the random payload does not open, and §7.1 makes it a rejection
// like a stale key ('rejected'), not 'grease'. Tests of GREASE use this to
// accept exactly that case and nothing else.
import { expect } from 'vitest';
import { decodeEchConfigList } from '../../src/ech/config.js';
import { fromBase64 } from '../../src/wire/bytes.js';

/**
 * The status the server must have reported for one GREASE connection:
 * 'grease', or 'rejected' only when the random config_id hit one of
 * `serverConfigIds`. Fails the test otherwise.
 */
export function greaseOutcome(report: { echStatus: unknown; configId?: unknown }, serverConfigIds: readonly number[]): 'grease' | 'rejected' {
  if (report.echStatus === 'rejected' && serverConfigIds.includes(report.configId as number)) return 'rejected';
  expect(report.echStatus).toBe('grease');
  return 'grease';
}

/** The config_ids of an ECHConfigList (base64 or bytes). */
export function configIdsOf(list: string | Uint8Array): number[] {
  return decodeEchConfigList(typeof list === 'string' ? fromBase64(list) : list).configs.map((c) => c.configId);
}
