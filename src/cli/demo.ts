/**
 * `npm run demo`: the decryption core on embedded defaults. One cover name on
 * the wire, several hidden sites inside, and what each side sees.
 *
 * @module
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExtensionType } from '../tls/constants.js';
import { encodeClientHelloMessage, findExtension } from '../tls/client-hello.js';
import { decodeEchClientHello, decodeServerName } from '../tls/extensions.js';
import { buildClientHello, buildEchClientHello, buildGreaseEchClientHello } from '../ech/builder.js';
import { createEchSealer } from '../ech/sealer.js';
import { decryptClientHello } from '../ech/decrypt.js';
import { EchError } from '../wire/alert.js';
import { generateEchKey } from '../keys/generate.js';
import { ensureKeyDirectory, loadEchKeyDirectory, writeEchKeyFile } from '../keys/files.js';
import { generateKeyPairSync } from 'node:crypto';

const PUBLIC_NAME = 'cover.example';

function x25519Share() {
  const { publicKey } = generateKeyPairSync('x25519');
  const x = publicKey.export({ format: 'jwk' }).x!;
  return { group: 0x001d, keyExchange: new Uint8Array(Buffer.from(x, 'base64url')) };
}

interface Row {
  client: string;
  wireSni: string;
  wireEch: string;
  status: string;
  serverSaw: string;
}

/**
 * Run the demo; resolves to an exit code.
 * @group CLI
 * @example
 * ```ts
 * await runDemo('/tmp/ech-demo');
 * ```
 */
export async function runDemo(dirArg?: string): Promise<number> {
  const dir = dirArg ?? join(tmpdir(), 'ech-server-demo');
  await ensureKeyDirectory(dir);
  let keys;
  try {
    keys = await loadEchKeyDirectory(dir);
  } catch (e) {
    if (!(e instanceof EchError)) throw e;
    const key = generateEchKey({ publicName: PUBLIC_NAME, maximumNameLength: 32 });
    await writeEchKeyFile(join(dir, `ech-${PUBLIC_NAME}.pem`), key.config, key.privateKeyRaw);
    keys = await loadEchKeyDirectory(dir);
  }
  const config = keys.retryConfigs()[0]!;
  process.stdout.write(`ECH keys in ${dir} (public name ${config.publicName}, config_id ${config.configId})\n\n`);

  const stale = generateEchKey({ publicName: PUBLIC_NAME, configId: config.configId });
  const clients: Array<{ label: string; hello: () => Promise<Uint8Array> }> = [
    {
      label: 'ECH to alpha.example',
      hello: async () => (await buildEchClientHello({ serverName: 'alpha.example', alpn: ['h2', 'http/1.1'], keyShares: [x25519Share()] }, { config, sealer: createEchSealer })).outerMessage,
    },
    {
      label: 'ECH to beta.example',
      hello: async () => (await buildEchClientHello({ serverName: 'beta.example', alpn: ['http/1.1'], keyShares: [x25519Share()] }, { config, sealer: createEchSealer })).outerMessage,
    },
    {
      label: 'ECH with a stale key',
      hello: async () => (await buildEchClientHello({ serverName: 'alpha.example', keyShares: [x25519Share()] }, { config: stale.config, sealer: createEchSealer })).outerMessage,
    },
    {
      label: 'GREASE ECH',
      hello: async () => encodeClientHelloMessage(buildGreaseEchClientHello({ serverName: 'plain.example', keyShares: [x25519Share()] })),
    },
    { label: 'no ECH', hello: async () => encodeClientHelloMessage(buildClientHello({ serverName: 'plain.example', keyShares: [x25519Share()] })) },
  ];

  const rows: Row[] = [];
  for (const c of clients) {
    const msg = await c.hello();
    const r = await decryptClientHello(msg, keys);
    const echExt = findExtension(r.outer.extensions, ExtensionType.encrypted_client_hello);
    const ech = echExt ? decodeEchClientHello(echExt.data) : undefined;
    const sni = findExtension(r.outer.extensions, ExtensionType.server_name);
    rows.push({
      client: c.label,
      wireSni: sni ? (decodeServerName(sni.data) ?? '-') : '-',
      wireEch: ech?.type === 'outer' ? `config_id ${ech.configId}, ${ech.payload.length}-byte payload` : '-',
      status: r.status === 'rejected' ? `rejected (${r.reason})` : r.status,
      serverSaw:
        r.status === 'accepted'
          ? `inner SNI ${r.innerServerName}, ALPN ${r.alpn.join(',') || '-'}`
          : r.status === 'rejected'
            ? `handshake for ${r.outerServerName} + retry_configs`
            : `plain SNI ${r.outerServerName}`,
    });
  }
  const cols: Array<[keyof Row, string]> = [
    ['client', 'client'],
    ['wireSni', 'wire: SNI'],
    ['wireEch', 'wire: ECH extension'],
    ['status', 'server: ECH'],
    ['serverSaw', 'server saw'],
  ];
  const widths = cols.map(([k, h]) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  process.stdout.write(`${line(cols.map(([, h]) => h))}\n${widths.map((w) => '-'.repeat(w)).join('-+-')}\n`);
  for (const r of rows) process.stdout.write(`${line(cols.map(([k]) => r[k]))}\n`);
  process.stdout.write(`\nOnly "${PUBLIC_NAME}" is visible on the wire; the hidden names travel inside the encrypted payload.\n`);
  return 0;
}
