/**
 * Bench cases for keyless mode: whole ECH handshakes per second over
 * loopback against an {@link EchFrontEnd} with local keys, and against one
 * whose ECH key and certificate key live in a {@link KeyServer} (same
 * process, reached over loopback mutually authenticated TLS through a
 * {@link KeylessClient}). The client is this library's TLS 1.3 client,
 * wrapping its ClientHello as ClientHelloInner in an ECH ClientHelloOuter.
 *
 * Certificates are made with the `openssl` command in a temporary directory
 * (keys 0600) that is removed by `close()`.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EchKeySet } from '../keys/key-set.js';
import { generateEchKey } from '../keys/generate.js';
import type { EchConfig } from '../ech/config.js';
import { echHpkeInfo } from '../ech/decrypt.js';
import { encodeClientHelloInner } from '../ech/inner.js';
import { echPaddingLength } from '../ech/builder.js';
import { ServerCertificate } from '../tls13/certificates.js';
import { setupBaseSender } from '../crypto/hpke.js';
import { decodeClientHello, encodeClientHello, type ClientHello } from '../tls/client-hello.js';
import { encodeEchClientHello, encodeServerName } from '../tls/extensions.js';
import { encodeHandshake } from '../tls/record.js';
import { ExtensionType, HandshakeType } from '../tls/constants.js';
import { connectTls13 } from '../tls13/client-socket.js';
import { EchFrontEnd } from '../front/front-end.js';
import { KeyServer } from '../keyless/server.js';
import { KeylessClient } from '../keyless/client.js';
import type { BenchCase, Measurement } from './harness.js';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
}

/**
 * A CA and P-256 leaves signed by it, made with the openssl command (keys
 * 0600 in `dir`).
 * @group Bench
 * @example
 * ```ts
 * const pki = makeBenchPki(dir, { site: ['cover.example', 'alpha.example'] });
 * ```
 */
export function makeBenchPki(dir: string, leaves: Record<string, string[]>): Record<string, { cert: string; key: string }> & { ca: { cert: string } } {
  const key = (name: string) => {
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
    chmodSync(join(dir, `${name}.key`), 0o600);
  };
  key('ca');
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=Bench CA', '-days', '1', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], dir);
  const out: Record<string, { cert: string; key: string }> = {};
  for (const [name, names] of Object.entries(leaves)) {
    key(name);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nbasicConstraints=CA:FALSE\n`);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${names[0]}`, '-out', `${name}.csr`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
    out[name] = { cert: readFileSync(join(dir, `${name}.pem`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
  }
  return Object.assign(out, { ca: { cert: readFileSync(join(dir, 'ca.pem'), 'utf8') } });
}

/**
 * Client options that send `servername` inside ECH to `config`: the
 * client's own ClientHello becomes ClientHelloInner (uncompressed, padded),
 * sealed into a ClientHelloOuter for the config's public_name.
 * @group Bench
 * @example
 * ```ts
 * const s = connectTls13({ host, port, servername: 'alpha.example', ...echClientOptions(config, 'alpha.example') });
 * ```
 */
export function echClientOptions(config: EchConfig, serverName: string) {
  const suite = config.cipherSuites[0]!;
  const info = echHpkeInfo(config);
  return {
    mutateClientHello: (ch: ClientHello) => {
      ch.extensions.push({ type: ExtensionType.encrypted_client_hello, data: encodeEchClientHello({ type: 'inner' }) });
    },
    wireClientHello: (message: Uint8Array) => {
      const inner = decodeClientHello(message.subarray(4));
      const unpadded = encodeClientHelloInner(inner, [], 0);
      const encoded = encodeClientHelloInner(inner, [], echPaddingLength(unpadded.length, config.maximumNameLength, serverName));
      const sender = setupBaseSender({ kem: config.kemId, kdf: suite.kdfId, aead: suite.aeadId }, config.publicKey, info);
      const echExt = (payload: Uint8Array) => ({
        type: ExtensionType.encrypted_client_hello,
        data: encodeEchClientHello({ type: 'outer', kdfId: suite.kdfId, aeadId: suite.aeadId, configId: config.configId, enc: sender.enc, payload }),
      });
      const outer: ClientHello = {
        ...inner,
        random: new Uint8Array(randomBytes(32)),
        extensions: [
          ...inner.extensions.filter((e) => e.type !== ExtensionType.encrypted_client_hello && e.type !== ExtensionType.server_name),
          { type: ExtensionType.server_name, data: encodeServerName(config.publicName) },
          echExt(new Uint8Array(encoded.length + 16)),
        ],
      };
      const payload = sender.seal(encodeClientHello(outer), encoded);
      outer.extensions[outer.extensions.length - 1] = echExt(payload);
      return encodeHandshake(HandshakeType.client_hello, encodeClientHello(outer));
    },
  };
}

/**
 * One whole ECH handshake with this library's client against 127.0.0.1:`port`
 * with `opts` from {@link echClientOptions} (made once, outside the timed
 * loop), closed once done; rejects after 5 s.
 * @group Bench
 * @example
 * ```ts
 * const opts = echClientOptions(key.config, 'alpha.example');
 * await echHandshake(port, opts, 'alpha.example');
 * ```
 */
export function echHandshake(port: number, opts: ReturnType<typeof echClientOptions>, serverName: string): Promise<void> {
  return new Promise<void>((res, rej) => {
    const s = connectTls13({ host: '127.0.0.1', port, servername: serverName, rejectUnauthorized: false, ...opts });
    const t = setTimeout(() => {
      s.destroy();
      rej(new Error('bench handshake did not finish in 5 s'));
    }, 5000);
    s.once('secureConnect', () => {
      clearTimeout(t);
      s.destroy();
      res();
    });
    s.once('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
  });
}

/**
 * Cases `handshake_local_us` and `handshake_keyless_us`, the per-second
 * figures derived from them, and a `close()` that stops every server.
 * @group Bench
 * @example
 * ```ts
 * const k = await keylessBench();
 * const results = await runCases([...cases, ...k.cases]);
 * Object.assign(out, k.summary(results));
 * await k.close();
 * ```
 */
export async function keylessBench(): Promise<{
  cases: BenchCase[];
  summary(results: Map<string, Measurement>): Record<string, number>;
  close(): Promise<void>;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'ech-bench-keyless-'));
  const closers: Array<() => unknown> = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  try {
    const pki = makeBenchPki(dir, { site: ['cover.example', 'alpha.example'], keyserver: ['keyserver.bench'], edge: ['edge.bench'] });
    const site = pki['site']!;
    const ech = generateEchKey({ publicName: 'cover.example' });
    const handler = { handler: (s: { destroy(): void }) => s.destroy() };
    const local = new EchFrontEnd({
      keys: new EchKeySet([ech]),
      publicName: site,
      routes: [{ serverName: 'alpha.example', ...site, action: handler }],
    });
    closers.push(() => local.close());
    const ks = new KeyServer({
      cert: pki['keyserver']!.cert,
      key: pki['keyserver']!.key,
      ca: pki.ca.cert,
      echKeys: new EchKeySet([ech]),
      tlsKeys: [ServerCertificate.from(site)],
      clients: [{ name: 'edge.bench', ech: ['*'], tls: ['*'], ratePerSecond: 1e6 }],
    });
    closers.push(() => ks.close());
    const { port: ksPort } = await ks.listen(0, '127.0.0.1');
    const client = new KeylessClient({ servers: [{ host: '127.0.0.1', port: ksPort, serverName: 'keyserver.bench' }], cert: pki['edge']!.cert, key: pki['edge']!.key, ca: pki.ca.cert });
    closers.push(() => client.close());
    await client.ready(5000);
    const keyless = new EchFrontEnd({
      keys: new EchKeySet([{ config: ech.config, privateKey: client.echPrivateKey(ech.config), retry: true }]),
      publicName: { cert: site.cert, sign: client.signer(site.cert) },
      routes: [{ serverName: 'alpha.example', cert: site.cert, sign: client.signer(site.cert), action: handler }],
    });
    closers.push(() => keyless.close());
    const localPort = (await local.listen(0, '127.0.0.1')).port;
    const keylessPort = (await keyless.listen(0, '127.0.0.1')).port;
    const opts = echClientOptions(ech.config, 'alpha.example');
    const handshake = (port: number) => () => echHandshake(port, opts, 'alpha.example');
    // Sanity before timing: both handshakes complete and the keyless one used the key server.
    await handshake(localPort)();
    await handshake(keylessPort)();
    if (client.requestCount('decap', 'ok') < 1 || client.requestCount('sign', 'ok') < 1) throw new Error('keyless bench: the key server was not used');
    const options = { warmup: 20, warmupTimeMs: 1000, minIterations: 20, maxIterations: 400, maxTimeMs: 3000 };
    const cases: BenchCase[] = [
      { field: 'handshake_local_us', label: 'ECH handshake over loopback (accepted, ECDSA P-256), local ECH and certificate keys', options, setup: () => handshake(localPort) },
      {
        field: 'handshake_keyless_us',
        label: 'the same handshake with decap and CertificateVerify on a key server (same process, loopback mTLS)',
        options,
        setup: () => handshake(keylessPort),
      },
    ];
    const perSecond = (m: Measurement | undefined) => (m ? Math.round(1e6 / m.median_us) : Number.NaN);
    return {
      cases,
      summary: (results) => ({
        handshake_local_per_s: perSecond(results.get('handshake_local_us')),
        handshake_keyless_per_s: perSecond(results.get('handshake_keyless_us')),
      }),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
