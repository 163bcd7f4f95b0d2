/**
 * Browser-shaped ECH ClientHellos for the benchmark: about 1.8 KB on the
 * wire like Chromium's (an X25519MLKEM768-sized key share next to X25519,
 * GREASE extensions, the usual extension list, ALPN), with the inner hello
 * compressed and padded to the ECHConfig's maximum_name_length.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { ExtensionType, NamedGroup } from '../tls/constants.js';
import { encodeClientHelloMessage } from '../tls/client-hello.js';
import { decodeEchClientHello, encodeEchClientHello } from '../tls/extensions.js';
import { buildEchClientHello } from '../ech/builder.js';
import { createEchSealer } from '../ech/sealer.js';
import { EchKeySet } from '../keys/key-set.js';
import { generateEchKey } from '../keys/generate.js';

/**
 * A key set and `n` ClientHello messages for it: `accepted` decrypt,
 * `unknownConfigId` are the same hellos with a config_id no key has.
 * @group Bench
 * @example
 * ```ts
 * const { keys, accepted } = browserShapedHellos(8);
 * await decryptClientHello(accepted[0], keys);
 * ```
 */
export async function browserShapedHellos(
  n: number,
): Promise<{ keys: EchKeySet; accepted: Uint8Array[]; unknownConfigId: Uint8Array[]; sizes: number[] }> {
  const key = generateEchKey({ publicName: 'cover.example', configId: 0x42, maximumNameLength: 64 });
  const keys = new EchKeySet([key]);
  const accepted: Uint8Array[] = [];
  const unknownConfigId: Uint8Array[] = [];
  const sizes: number[] = [];
  const grease = (v: number) => ({ type: v, data: new Uint8Array(0) });
  for (let i = 0; i < n; i++) {
    const h = await buildEchClientHello(
      {
        serverName: 'secret-site.example',
        alpn: ['h2', 'http/1.1'],
        keyShares: [
          { group: 0x6a6a, keyExchange: new Uint8Array(1) },
          { group: NamedGroup.X25519MLKEM768, keyExchange: new Uint8Array(randomBytes(1216)) },
          { group: NamedGroup.x25519, keyExchange: new Uint8Array(randomBytes(32)) },
        ],
        supportedGroups: [0x6a6a, NamedGroup.X25519MLKEM768, NamedGroup.x25519, NamedGroup.secp256r1, NamedGroup.secp384r1],
        supportedVersions: [0x3a3a, 0x0304],
        extraExtensions: [
          grease(0x0a0a),
          { type: ExtensionType.extended_master_secret, data: new Uint8Array(0) },
          { type: ExtensionType.renegotiation_info, data: new Uint8Array([0]) },
          { type: ExtensionType.ec_point_formats, data: new Uint8Array([1, 0]) },
          { type: ExtensionType.session_ticket, data: new Uint8Array(0) },
          { type: ExtensionType.status_request, data: new Uint8Array([1, 0, 0, 0, 0]) },
          { type: ExtensionType.signed_certificate_timestamp, data: new Uint8Array(0) },
          { type: ExtensionType.compress_certificate, data: new Uint8Array([2, 0, 2]) },
          { type: 0x44cd, data: new Uint8Array([0, 3, 2, 0x68, 0x32]) },
          grease(0x1a1a),
        ],
      },
      { config: key.config, sealer: createEchSealer },
    );
    accepted.push(h.outerMessage);
    sizes.push(h.outerMessage.length);
    const other = h.outer.extensions.map((e) => {
      if (e.type !== ExtensionType.encrypted_client_hello) return e;
      const d = decodeEchClientHello(e.data);
      if (d.type !== 'outer') return e;
      return { type: e.type, data: encodeEchClientHello({ ...d, configId: 0x43 }) };
    });
    unknownConfigId.push(encodeClientHelloMessage({ ...h.outer, extensions: other }));
  }
  return { keys, accepted, unknownConfigId, sizes };
}
