/**
 * The exporter master secret (RFC 9846 §7.1) is derived on the first
 * TLS-Exporter call, not in every handshake: one HKDF-Expand-Label (an
 * HMAC, two SHA-256 one-shots) fewer per connection that never exports.
 * Its value is checked against Node's own client in tls13-node-interop.
 */
import { describe, expect, test } from 'vitest';
import { localhostPki, memoryPair } from './tls13-helpers.js';
import { resolveServerConfig } from '../src/tls13/config.js';
import { KeySchedule, exportKeyingMaterial } from '../src/tls13/key-schedule.js';

const local = localhostPki();

describe('exporter master secret', () => {
  test('derived on the first export only, then the same value as the eager derivation', async () => {
    const p = memoryPair(resolveServerConfig({ key: local.leaf.key, cert: local.leaf.cert }), { servername: 'localhost', ca: local.pki.caPem });
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    const server = p.server as unknown as { exporterSecret?: Uint8Array; exporterTranscript: Uint8Array; schedule: KeySchedule };
    // Before: set at the server's Finished in every handshake.
    expect(server.exporterSecret).toBeUndefined();
    const ekm = p.server.exportKeyingMaterial('EXPORTER-test', Uint8Array.of(1, 2, 3), 32);
    expect(server.exporterSecret).toBeDefined();
    const eager = server.schedule.applicationSecrets(server.exporterTranscript).exporter;
    expect(Buffer.from(server.exporterSecret!)).toEqual(Buffer.from(eager));
    expect(Buffer.from(ekm)).toEqual(Buffer.from(exportKeyingMaterial('sha256', eager, 'EXPORTER-test', Uint8Array.of(1, 2, 3), 32)));
  });
});
