/**
 * The project's fuzz targets: the record reader, the ClientHello and
 * extension parsers, the ECHConfigList parser, `decryptClientHello` on
 * mutated ClientHelloOuters and on mutated EncodedClientHelloInners sealed
 * properly (so the inner checks of RFC 9849 §5.1 run), and the TLS 1.3
 * server engine fed byte streams, directly and through {@link TlsSocket} on an
 * in-memory duplex.
 *
 * Keys are derived from the seed, so a reproducer replays with the same
 * `--seed`.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { Duplex } from 'node:stream';
import { EchError } from '../wire/alert.js';
import { ContentType, ExtensionType } from '../tls/constants.js';
import { HandshakeReassembler, readFirstHandshakeMessage, readRecord, writeRecords } from '../tls/record.js';
import {
  type ClientHello,
  decodeClientHello,
  encodeClientHello,
  encodeClientHelloMessage,
  type Extension,
  parseClientHelloOwned,
} from '../tls/client-hello.js';
import {
  decodeAlpn,
  decodeCookie,
  decodeEchClientHello,
  decodeEchOuterExtensions,
  decodeKeyShareClient,
  decodeOfferedPsks,
  decodePskKeyExchangeModes,
  decodeServerName,
  decodeSignatureAlgorithms,
  decodeSupportedGroups,
  decodeSupportedVersions,
  encodeAlpn,
  encodeCookie,
  encodeEchClientHello,
  encodeEchOuterExtensions,
  encodeKeyShareClient,
  encodeOfferedPsks,
  encodePskKeyExchangeModes,
  encodeServerName,
  encodeSignatureAlgorithms,
  encodeSupportedGroups,
  encodeSupportedVersions,
  pskBindersLength,
} from '../tls/extensions.js';
import { ExtensionList, scanClientHello } from '../tls/scan.js';
import { decodeEchConfigList, encodeEchConfig, encodeEchConfigList, type EchConfig, makeEchConfig } from '../ech/config.js';
import { decryptClientHello, echHpkeInfo, type DecryptResult } from '../ech/decrypt.js';
import { buildClientHello, buildEchClientHello, buildGreaseEchClientHello, buildSecondEchClientHello, type ClientHelloSpec, type EchClientHello } from '../ech/builder.js';
import { encodeClientHelloInner } from '../ech/inner.js';
import { createEchSealer } from '../ech/sealer.js';
import { kemPublicKey, loadKemPrivateKey } from '../crypto/kem.js';
import { setupBaseSender } from '../crypto/hpke.js';
import { EchKeySet } from '../keys/key-set.js';
import { resolveServerConfig, type ServerConfig } from '../tls13/config.js';
import { createEchHook } from '../tls13/ech-hook.js';
import { ServerConnection } from '../tls13/server-handshake.js';
import { TlsSocket } from '../tls13/socket.js';
import { createTestPki } from '../testing/pki.js';
import type { FuzzTarget } from './engine.js';
import { Rng } from './rng.js';
import { mutate } from './mutate.js';

const X25519 = 0x0020;
const P256 = 0x0010;

const derive = (label: string, seed: number): Uint8Array =>
  new Uint8Array(createHash('sha256').update(`ech-server fuzz ${label} ${seed}`).digest());

/** An ECH key (and its ECHConfig) derived from the seed. */
function seededKey(kem: number, configId: number, seed: number, suites = [{ kdfId: 1, aeadId: 1 }, { kdfId: 1, aeadId: 3 }]) {
  const raw = derive(`kem ${kem} ${configId}`, seed);
  const config = makeEchConfig({
    configId,
    kemId: kem,
    publicKey: kemPublicKey(kem, raw),
    cipherSuites: suites,
    maximumNameLength: 32,
    publicName: 'cover.example',
    extensions: [],
  });
  return { config, privateKey: loadKemPrivateKey(kem, raw), retry: true };
}

/** Decoders of the ClientHello extensions this project parses, by type. */
const DECODERS: ReadonlyArray<[number, (d: Uint8Array) => unknown]> = [
  [ExtensionType.server_name, decodeServerName],
  [ExtensionType.application_layer_protocol_negotiation, decodeAlpn],
  [ExtensionType.supported_versions, decodeSupportedVersions],
  [ExtensionType.supported_groups, decodeSupportedGroups],
  [ExtensionType.signature_algorithms, decodeSignatureAlgorithms],
  [ExtensionType.psk_key_exchange_modes, decodePskKeyExchangeModes],
  [ExtensionType.key_share, decodeKeyShareClient],
  [ExtensionType.pre_shared_key, (d) => [decodeOfferedPsks(d), pskBindersLength(d)]],
  [ExtensionType.cookie, decodeCookie],
  [ExtensionType.encrypted_client_hello, decodeEchClientHello],
  [ExtensionType.ech_outer_extensions, decodeEchOuterExtensions],
];
const DECODER_BY_TYPE = new Map(DECODERS);

function decodeExtensions(exts: readonly Extension[]): void {
  for (const e of exts) DECODER_BY_TYPE.get(e.type)?.(e.data);
}

/** Views and lazily decoded fields of a decryption result, all read (a lazy parse that throws must throw here). */
function touch(r: DecryptResult): void {
  void r.outer.extensions.length;
  if (r.status === 'accepted') {
    void r.inner.extensions.length;
    decodeExtensions(r.inner.extensions);
  }
}

const u16 = (v: number) => [v >> 8, v & 0xff];

/** Structure-aware ClientHello mutation: drop, repeat, move, corrupt or add extensions; change a field. */
function mutateHello(rng: Rng, base: ClientHello, seeds: readonly Uint8Array[], keep?: number): ClientHello {
  const exts = base.extensions.map((e) => ({ type: e.type, data: e.data }));
  const ch: ClientHello = { ...base, extensions: exts };
  const steps = 1 + rng.int(3);
  for (let s = 0; s < steps; s++) {
    const i = rng.int(exts.length);
    const protectedExt = keep !== undefined && exts[i]?.type === keep;
    switch (rng.int(9)) {
      case 0:
        if (!protectedExt && exts.length) exts.splice(i, 1);
        break;
      case 1:
        if (exts.length) exts.splice(rng.int(exts.length + 1), 0, { ...exts[i]! });
        break;
      case 2:
        if (exts.length > 1) {
          const j = rng.int(exts.length);
          [exts[i], exts[j]] = [exts[j]!, exts[i]!];
        }
        break;
      case 3:
      case 4:
        if (exts.length) exts[i] = { type: exts[i]!.type, data: mutate(rng, exts[i]!.data, seeds, 3, 4000) };
        break;
      case 5: {
        const [type] = rng.pick(DECODERS);
        exts.splice(rng.int(exts.length + 1), 0, { type, data: rng.bytes(rng.int(40)) });
        break;
      }
      case 6: {
        // ech_outer_extensions in a hello where it may not appear.
        const refs = Array.from({ length: 1 + rng.int(4) }, () => rng.pick(exts)?.type ?? 0);
        exts.splice(rng.int(exts.length + 1), 0, { type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions(refs) });
        break;
      }
      case 7:
        ch.cipherSuites = rng.chance(0.5) ? [] : [...ch.cipherSuites, rng.next() & 0xffff];
        break;
      default:
        ch.legacySessionId = rng.bytes(rng.pick([0, 1, 32, 33]));
        break;
    }
  }
  return ch;
}

/** A memory-only duplex pair: what one end writes, the other reads. */
function memoryDuplexPair(): [Duplex, Duplex] {
  let a: Duplex;
  let b: Duplex;
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        peer().push(chunk);
        cb();
      },
      final(cb) {
        peer().push(null);
        cb();
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}

/** Thrown by a target when the code under test broke its contract in a way that is not an exception of its own. */
class ContractBroken extends Error {
  override name = 'ContractBroken';
}

function expectTyped(err: unknown): void {
  if (!(err instanceof EchError)) throw err;
}

/**
 * Build the project's fuzz targets for `seed`.
 * @group Fuzz
 * @example
 * ```ts
 * const targets = await projectTargets(1);
 * const report = await runFuzz(targets, { seconds: 60, seed: 1 });
 * ```
 */
export async function projectTargets(seed: number): Promise<FuzzTarget[]> {
  const rng = new Rng(seed, 0);
  const k1 = seededKey(X25519, 0x2a, seed);
  const k2 = seededKey(P256, 0x2b, seed, [{ kdfId: 1, aeadId: 1 }]);
  const keys = new EchKeySet([k1, k2]);
  const share = () => ({ group: 0x001d, keyExchange: rng.bytes(32) });
  const spec = (extra: Partial<ClientHelloSpec> = {}): ClientHelloSpec => ({
    serverName: 'secret.example',
    alpn: ['h2', 'http/1.1'],
    keyShares: [share()],
    sessionId: rng.bytes(32),
    random: rng.bytes(32),
    ...extra,
  });
  const psk = { identities: [{ identity: rng.bytes(48), obfuscatedTicketAge: 12345 }], binders: [rng.bytes(32)] };
  const hellos: EchClientHello[] = [
    await buildEchClientHello(spec(), { config: k1.config, sealer: createEchSealer }),
    await buildEchClientHello(spec({ psk }), { config: k1.config, sealer: createEchSealer, suite: { kdfId: 1, aeadId: 3 } }),
    await buildEchClientHello(spec({ alpn: undefined }), { config: k2.config, sealer: createEchSealer, compress: false }),
  ];
  const plain = buildClientHello(spec());
  const grease = buildGreaseEchClientHello(spec());
  const helloBodies = [...hellos.map((h) => encodeClientHello(h.outer)), encodeClientHello(plain), encodeClientHello(grease)];
  const helloMessages = [...hellos.map((h) => h.outerMessage), encodeClientHelloMessage(plain), encodeClientHelloMessage(grease)];
  // A hello that forces a HelloRetryRequest (no key share), and its second hello.
  const hrrSpec = spec({ keyShares: [] });
  const hrrFirst = await buildEchClientHello(hrrSpec, { config: k1.config, sealer: createEchSealer });
  const hrrSecond = await buildSecondEchClientHello({ ...hrrSpec, keyShares: [share()] }, hrrFirst, { config: k1.config, sealer: createEchSealer });
  const rec = (m: Uint8Array, max?: number) => writeRecords(ContentType.handshake, m, 0x0303, max);
  const ccs = Uint8Array.of(20, 3, 3, 0, 1, 1);
  const appData = new Uint8Array([23, 3, 3, 0, 40, ...rng.bytes(40)]);
  const alert = Uint8Array.of(21, 3, 3, 0, 2, 2, 40);
  const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
  const streams = [
    rec(hellos[0]!.outerMessage),
    rec(hellos[1]!.outerMessage, 128),
    cat(rec(hellos[2]!.outerMessage), ccs, appData),
    cat(rec(hrrFirst.outerMessage), ccs, rec(hrrSecond.outerMessage), appData),
    cat(rec(encodeClientHelloMessage(plain)), ccs, appData, alert),
    rec(encodeClientHelloMessage(grease)),
  ];

  const records: FuzzTarget = {
    name: 'record',
    seeds: streams,
    run(b) {
      try {
        readFirstHandshakeMessage(b);
      } catch (e) {
        expectTyped(e);
      }
      const hs = new HandshakeReassembler();
      for (let off = 0; ; ) {
        const r = readRecord(b, off);
        if (!r) break;
        off = r.next;
        if (r.record.type !== ContentType.handshake) continue;
        hs.push(r.record.fragment);
        for (let m = hs.next(); m; m = hs.next()) void m.body.length;
      }
    },
  };

  const list = new ExtensionList();
  const clientHello: FuzzTarget = {
    name: 'client-hello',
    seeds: helloBodies,
    generate: (r, seeds) => {
      const base = decodeClientHello(r.pick(seeds.slice(0, helloBodies.length)));
      try {
        return encodeClientHello(mutateHello(r, base, seeds));
      } catch {
        return mutate(r, r.pick(seeds), seeds);
      }
    },
    run(b) {
      // scanClientHello promises "the same structural checks as decodeClientHello".
      let scanError: unknown;
      try {
        scanClientHello(b, list);
      } catch (e) {
        expectTyped(e);
        scanError = e;
      }
      let decoded: ClientHello | undefined;
      try {
        decoded = decodeClientHello(b);
        parseClientHelloOwned(b.slice());
      } catch (e) {
        expectTyped(e);
        if (!scanError) throw new ContractBroken(`decodeClientHello refused what scanClientHello accepted: ${(e as Error).message}`);
        return;
      }
      if (scanError) throw new ContractBroken(`scanClientHello refused what decodeClientHello accepted: ${(scanError as Error).message}`);
      decodeExtensions(decoded.extensions);
    },
  };

  const extensionSeeds: Uint8Array[] = [
    encodeServerName('secret.example'),
    encodeAlpn(['h2', 'http/1.1']),
    encodeSupportedVersions([0x0304, 0x0303]),
    encodeSupportedGroups([0x1d, 0x17]),
    encodeSignatureAlgorithms([0x0403, 0x0804]),
    encodePskKeyExchangeModes([1]),
    encodeKeyShareClient([share()]),
    encodeOfferedPsks(psk),
    encodeCookie(rng.bytes(20)),
    encodeEchClientHello({ type: 'outer', kdfId: 1, aeadId: 1, configId: 0x2a, enc: rng.bytes(32), payload: rng.bytes(200) }),
    encodeEchOuterExtensions([10, 13, 51]),
  ].map((d, i) => new Uint8Array([i, ...d]));
  const extensions: FuzzTarget = {
    name: 'extensions',
    seeds: extensionSeeds,
    // First byte: which decoder (mod their count); the rest: extension_data.
    run(b) {
      if (b.length === 0) return;
      DECODERS[b[0]! % DECODERS.length]![1](b.subarray(1));
    },
  };

  const configs: EchConfig[] = [
    k1.config,
    k2.config,
    makeEchConfig({ ...k1.config, configId: 9, extensions: [{ type: 0x1234, data: rng.bytes(5) }, { type: 0x8888, data: new Uint8Array(0) }] }),
  ];
  const echConfig: FuzzTarget = {
    name: 'ech-config-list',
    seeds: [encodeEchConfigList(configs), encodeEchConfigList([configs[2]!]), encodeEchConfigList([k1.config])],
    generate: (r, seeds) => {
      try {
        const parts = Array.from({ length: 1 + r.int(3) }, () =>
          encodeEchConfig({
            configId: r.int(256),
            kemId: r.pick([X25519, P256, 0x11, 0x21, r.next() & 0xffff]),
            publicKey: r.bytes(r.pick([0, 32, 65, 97, r.int(300)])),
            cipherSuites: Array.from({ length: r.int(4) }, () => ({ kdfId: r.pick([1, 2, 3, r.next() & 0xffff]), aeadId: r.pick([1, 2, 3, 0xffff]) })),
            maximumNameLength: r.int(256),
            publicName: r.pick(['cover.example', 'a', '1.2.3.4', 'x'.repeat(r.int(260)), 'A..b', 'xn--e.example', '']),
            extensions: Array.from({ length: r.int(3) }, () => ({ type: r.next() & 0xffff, data: r.bytes(r.int(20)) })),
          }),
        );
        const body = cat(...parts);
        return new Uint8Array([...u16(body.length), ...body]);
      } catch {
        return mutate(r, r.pick(seeds), seeds);
      }
    },
    run(b) {
      const { configs: got } = decodeEchConfigList(b);
      for (const c of got) echHpkeInfo(c);
    },
  };

  const echOuter: FuzzTarget = {
    name: 'ech-decrypt-outer',
    seeds: helloMessages,
    generate: (r, seeds) => {
      const h = r.pick(hellos);
      try {
        const ch = mutateHello(r, h.outer, seeds, ExtensionType.encrypted_client_hello);
        if (r.chance(0.5)) {
          // Change one field of the outer ECH extension, keeping its framing.
          const i = ch.extensions.findIndex((e) => e.type === ExtensionType.encrypted_client_hello);
          if (i >= 0) {
            const payload = h.outer.extensions.find((e) => e.type === ExtensionType.encrypted_client_hello)!.data;
            const enc = payload.subarray(8, 8 + ((payload[6]! << 8) | payload[7]!));
            ch.extensions[i] = {
              type: ExtensionType.encrypted_client_hello,
              data: encodeEchClientHello({
                type: 'outer',
                kdfId: r.pick([1, 2, 3, 0]),
                aeadId: r.pick([1, 2, 3, 0xffff]),
                configId: r.pick([0x2a, 0x2b, r.int(256)]),
                enc: r.chance(0.5) ? enc : r.bytes(r.pick([0, 1, 31, 32, 33, 65])),
                payload: r.bytes(1 + r.int(400)),
              }),
            };
          }
        }
        return encodeClientHelloMessage(ch);
      } catch {
        return mutate(r, r.pick(seeds), seeds);
      }
    },
    async run(b) {
      touch(await decryptClientHello(b, keys, { trialDecryption: (b.length & 1) === 1 }));
    },
  };

  // EncodedClientHelloInner inputs, sealed around the first hello's ClientHelloOuter.
  const base = hellos[0]!;
  const echIndex = base.outer.extensions.findIndex((e) => e.type === ExtensionType.encrypted_client_hello);
  const info = echHpkeInfo(k1.config);
  const seal = (encoded: Uint8Array): Uint8Array => {
    const sender = setupBaseSender({ kem: X25519, kdf: 1, aead: 1 }, k1.config.publicKey, info);
    const outer: ClientHello = { ...base.outer, extensions: [...base.outer.extensions] };
    const ext = (payload: Uint8Array): Extension => ({
      type: ExtensionType.encrypted_client_hello,
      data: encodeEchClientHello({ type: 'outer', kdfId: 1, aeadId: 1, configId: k1.config.configId, enc: sender.enc, payload }),
    });
    outer.extensions[echIndex] = ext(new Uint8Array(encoded.length + 16));
    const payload = sender.seal(encodeClientHello(outer), encoded);
    outer.extensions[echIndex] = ext(payload);
    return encodeClientHelloMessage(outer);
  };
  const innerSeeds = [base.encodedInner, encodeClientHelloInner(base.inner, [], 0), encodeClientHelloInner(base.inner, base.compressed.slice(1, 3), 7)];
  const outerTypes = base.outer.extensions.map((e) => e.type);
  const echInner: FuzzTarget = {
    name: 'ech-decrypt-inner',
    seeds: innerSeeds,
    maxLength: 8000,
    generate: (r, seeds) => {
      try {
        const inner = mutateHello(r, base.inner, seeds);
        // Compress a run of extensions, as references to outer ones that may
        // be missing, repeated, out of order, or the ECH extension itself.
        const present = inner.extensions.map((e) => e.type);
        let compress = base.compressed.filter((t) => present.includes(t));
        if (r.chance(0.3)) compress = compress.reverse();
        if (r.chance(0.3)) compress.push(r.pick([...outerTypes, ExtensionType.ech_outer_extensions, r.next() & 0xffff]));
        if (r.chance(0.2)) inner.extensions.push({ type: compress[compress.length - 1] ?? 0, data: new Uint8Array(0) });
        const encoded = encodeClientHelloInner(inner, r.chance(0.2) ? [] : compress, r.int(64));
        if (r.chance(0.2) && encoded.length) encoded[encoded.length - 1 - r.int(Math.min(encoded.length, 8))] = 1 + r.int(255);
        return encoded;
      } catch {
        return mutate(r, r.pick(seeds), seeds);
      }
    },
    async run(b) {
      let message: Uint8Array;
      try {
        message = seal(b);
      } catch {
        return; // not expressible inside a ClientHelloOuter
      }
      const result = await decryptClientHello(message, keys);
      // The sealing was right: anything but acceptance or a typed refusal is wrong.
      if (result.status !== 'accepted') throw new ContractBroken(`a properly sealed EncodedClientHelloInner was ${result.status}`);
      touch(result);
    },
  };

  const pki = createTestPki();
  const leaf = pki.issue(['secret.example', 'cover.example']);
  const serverConfig: ServerConfig = resolveServerConfig({
    key: leaf.key,
    cert: leaf.cert,
    ALPNProtocols: ['h2', 'http/1.1'],
    handshakeTimeout: 0,
    onClientHello: createEchHook({ keys }),
  });
  const server: FuzzTarget = {
    name: 'server-engine',
    seeds: streams,
    generate: (r, seeds) => {
      // Whole records around a mutated hello, so the engine gets past framing.
      const h = r.pick([...hellos, hrrFirst]);
      let m: Uint8Array;
      try {
        m = encodeClientHelloMessage(mutateHello(r, h.outer, seeds, ExtensionType.encrypted_client_hello));
      } catch {
        m = h.outerMessage;
      }
      const parts = [rec(m, r.chance(0.3) ? 1 + r.int(300) : undefined)];
      if (r.chance(0.5)) parts.push(ccs);
      if (h === hrrFirst && r.chance(0.7)) parts.push(rec(hrrSecond.outerMessage));
      for (let i = r.int(3); i > 0; i--) parts.push(r.pick([appData, alert, ccs, rec(r.bytes(r.int(64)))]));
      return cat(...parts);
    },
    async run(b) {
      // 1. The engine, the whole stream at once.
      const whole = new ServerConnection(serverConfig, { send() {} });
      await whole.receive(b).catch(expectTyped);
      // 2. The engine, in uneven pieces.
      const pieces = new ServerConnection(serverConfig, { send() {} });
      for (let i = 0, k = 0; i < b.length; k++) {
        const n = 1 + ((k * 131 + b.length) % 97);
        await pieces.receive(b.subarray(i, i + n)).catch(expectTyped);
        i += n;
      }
      // 3. TlsSocket over an in-memory duplex: it must close, with a typed error.
      const [client, transport] = memoryDuplexPair();
      client.resume();
      const socket = new TlsSocket(transport, serverConfig);
      await new Promise<void>((resolve, reject) => {
        socket.on('error', (e) => reject(new ContractBroken(`TlsSocket emitted 'error': ${e.message}`)));
        socket.on('tlsClientError', (e: unknown) => {
          if (!(e instanceof EchError)) reject(e);
        });
        socket.on('close', () => resolve());
        socket.resume();
        client.end(b);
      });
    },
  };

  return [records, clientHello, extensions, echConfig, echOuter, echInner, server];
}
