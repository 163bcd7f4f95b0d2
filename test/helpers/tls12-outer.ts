/**
 * An ECH ClientHello whose payload opens (ClientHelloInner offers TLS 1.3
 * only) while ClientHelloOuter offers TLS 1.2 only — forbidden by RFC 9849
 * §6.1, which no real client sends. Built with the library's builder: the
 * sealer sees (and seals under) the outer AAD with its supported_versions
 * rewritten to [0x0303], and the same bytes are rewritten in the message
 * that goes on the wire, so the AAD the server rebuilds matches.
 */
import type { EchConfig } from '../../src/ech/config.js';
import { buildEchClientHello, type EchSealerFactory } from '../../src/ech/builder.js';
import { createEchSealer } from '../../src/ech/sealer.js';
import { decodeClientHello } from '../../src/tls/client-hello.js';
import { ExtensionType, ProtocolVersion } from '../../src/tls/constants.js';
import { x25519Share } from './reference-keys.js';

/** Rewrite supported_versions [0x0304] to [0x0303] in a ClientHello body, in place. */
function downgradeVersions(body: Uint8Array): void {
  const ch = decodeClientHello(body);
  const i = ch.extensions.findIndex((e) => e.type === ExtensionType.supported_versions);
  const at = ch.extensionOffsets[i]!;
  if (i < 0 || body[at] !== 2 || body[at + 1] !== 3 || body[at + 2] !== 4) throw new Error('expected supported_versions [0x0304]');
  body[at + 2] = 3;
}

/** The ClientHelloOuter handshake message (header included). */
export async function echHelloWithTls12Outer(config: EchConfig, serverName: string): Promise<Uint8Array> {
  const sealer: EchSealerFactory = async (c, suite, info) => {
    const inner = await createEchSealer(c, suite, info);
    return {
      enc: inner.enc,
      seal: (aad, plaintext) => {
        const rewritten = aad.slice();
        downgradeVersions(rewritten);
        return inner.seal(rewritten, plaintext);
      },
    };
  };
  const hello = await buildEchClientHello(
    { serverName, keyShares: [x25519Share()], supportedVersions: [ProtocolVersion.TLS13] },
    { config, sealer, compress: false },
  );
  const message = hello.outerMessage.slice();
  downgradeVersions(message.subarray(4));
  return message;
}
