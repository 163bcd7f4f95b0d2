// The decryption core against RFC 9849 §5.1, §7.1 and §7.1.1: one case per
// rule, each asserting its alert. HPKE here is hpke-js (the reference), so
// the core is exercised with encryption nobody here wrote.
import { beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ExtensionType } from '../src/tls/constants.js';
import { type ClientHello, decodeClientHello, encodeClientHello, encodeClientHelloMessage, findExtension } from '../src/tls/client-hello.js';
import {
  decodeEchClientHello,
  encodeEchClientHello,
  encodeEchOuterExtensions,
  encodeSupportedVersions,
} from '../src/tls/extensions.js';
import { type EchClientHello, buildClientHello, buildEchClientHello, buildGreaseEchClientHello, buildSecondEchClientHello } from '../src/ech/builder.js';
import { type EchAccepted, decryptClientHello, decryptSecondClientHello } from '../src/ech/decrypt.js';
import { encodeClientHelloInner } from '../src/ech/inner.js';
import { EchError } from '../src/wire/alert.js';
import { type ReferenceKey, referenceKey, referenceLookup, referenceSealer, x25519Share } from './helpers/reference-keys.js';

let key: ReferenceKey;
let other: ReferenceKey;
const spec = () => ({ serverName: 'secret.example', alpn: ['h2', 'http/1.1'], keyShares: [x25519Share()] });

beforeAll(async () => {
  key = await referenceKey({ configId: 7, publicName: 'cover.example', maximumNameLength: 32 });
  other = await referenceKey({ configId: 8, publicName: 'cover.example' });
});

async function hello(s = spec()): Promise<EchClientHello> {
  return buildEchClientHello(s, { config: key.config, sealer: referenceSealer });
}

/** Re-seal `outer` around a hand-made EncodedClientHelloInner. */
async function sealCustom(base: EchClientHello, encodedInner: Uint8Array, mutateOuter?: (o: ClientHello) => void): Promise<Uint8Array> {
  const sealer = await referenceSealer(key.config, base.suite, new Uint8Array([...Buffer.from('tls ech\0', 'latin1'), ...key.config.raw]));
  const outer: ClientHello = { ...base.outer, extensions: base.outer.extensions.map((e) => ({ ...e })) };
  mutateOuter?.(outer);
  const i = outer.extensions.findIndex((e) => e.type === ExtensionType.encrypted_client_hello);
  const mk = (payload: Uint8Array) =>
    encodeEchClientHello({ type: 'outer', kdfId: base.suite.kdfId, aeadId: base.suite.aeadId, configId: key.config.configId, enc: sealer.enc, payload });
  outer.extensions[i] = { type: ExtensionType.encrypted_client_hello, data: mk(new Uint8Array(encodedInner.length + 16)) };
  const payload = await sealer.seal(encodeClientHello(outer), encodedInner);
  outer.extensions[i] = { type: ExtensionType.encrypted_client_hello, data: mk(payload) };
  return encodeClientHelloMessage(outer);
}

/** The inner hello of `base`, changed by `f`, encoded with the same compression. */
function customInner(base: EchClientHello, f: (inner: ClientHello) => void, padding = 0, compress = base.compressed): Uint8Array {
  const inner: ClientHello = { ...base.inner, extensions: base.inner.extensions.map((e) => ({ ...e })) };
  f(inner);
  return encodeClientHelloInner(inner, compress, padding);
}

async function expectAlert(p: Promise<unknown>, alert: string, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${alert}`).toBeInstanceOf(EchError);
  expect((err as EchError).alert).toBe(alert);
  if (message) expect((err as EchError).message).toMatch(message);
}

describe('decryptClientHello: accepted', () => {
  it('reconstructs ClientHelloInner, expanding ech_outer_extensions, with the outer session id', async () => {
    const h = await hello();
    expect(h.compressed.length).toBeGreaterThan(0);
    const r = await decryptClientHello(h.outerMessage, referenceLookup([other, key]));
    expect(r.status).toBe('accepted');
    const a = r as EchAccepted;
    expect(a.innerServerName).toBe('secret.example');
    expect(a.outerServerName).toBe('cover.example');
    expect(a.alpn).toEqual(['h2', 'http/1.1']);
    expect(a.config.configId).toBe(7);
    expect(a.innerMessage).toEqual(h.innerMessage);
    expect(a.inner.legacySessionId).toEqual(h.outer.legacySessionId);
    // the bare body works as well as the whole message
    expect((await decryptClientHello(h.outerMessage.subarray(4), referenceLookup([key]))).status).toBe('accepted');
  });

  it('pads the encoded inner hello to a multiple of 32 bytes (§6.1.3)', async () => {
    const h = await hello();
    expect(h.encodedInner.length % 32).toBe(0);
    const ech = decodeEchClientHello(findExtension(h.outer.extensions, ExtensionType.encrypted_client_hello)!.data);
    expect(ech.type === 'outer' && ech.payload.length).toBe(h.encodedInner.length + 16);
  });

  it('works without compression, and tolerates GREASE versions in the inner hello', async () => {
    const h = await buildEchClientHello({ ...spec(), supportedVersions: [0x7a7a, 0x0304] }, { config: key.config, sealer: referenceSealer, compress: false });
    expect(h.compressed).toEqual([]);
    const r = await decryptClientHello(h.outerMessage, referenceLookup([key]));
    expect(r.status).toBe('accepted');
  });

  it('uses trial decryption only when enabled (§7.1)', async () => {
    const h = await hello();
    // a config_id that matches no key: rejected by default, accepted with trial decryption
    const lookup = referenceLookup([{ ...key, config: { ...key.config, configId: 99 } }]);
    expect((await decryptClientHello(h.outerMessage, lookup)).status).toBe('rejected');
    expect((await decryptClientHello(h.outerMessage, lookup, { trialDecryption: true })).status).toBe('accepted');
  });
});

describe('decryptClientHello: rejected and not offered', () => {
  it('not-offered without the extension', async () => {
    const ch = buildClientHello(spec());
    const r = await decryptClientHello(encodeClientHelloMessage(ch), referenceLookup([key]));
    expect(r).toMatchObject({ status: 'not-offered', outerServerName: 'secret.example' });
  });

  it('GREASE ECH is rejected with no HPKE work (no key has its config_id)', async () => {
    const lookup = referenceLookup([key]);
    for (let i = 0; i < 20; i++) {
      const ch = buildGreaseEchClientHello({ serverName: 'plain.example', keyShares: [x25519Share()] });
      const id = decodeEchClientHello(findExtension(ch.extensions, ExtensionType.encrypted_client_hello)!.data);
      if (id.type === 'outer' && id.configId === key.config.configId) continue;
      const r = await decryptClientHello(encodeClientHelloMessage(ch), lookup);
      expect(r).toMatchObject({ status: 'rejected', reason: 'no-matching-config', outerServerName: 'plain.example' });
    }
    expect(lookup.opens).toBe(0);
  });

  it('a stale key (same config_id, other key) is rejected as decryption-failed', async () => {
    const stale = await referenceKey({ configId: 7, publicName: 'cover.example' });
    const h = await buildEchClientHello(spec(), { config: stale.config, sealer: referenceSealer });
    const r = await decryptClientHello(h.outerMessage, referenceLookup([key]));
    expect(r).toMatchObject({ status: 'rejected', reason: 'decryption-failed', outerServerName: 'cover.example' });
  });

  it('a tampered payload or a modified ClientHelloOuter (AAD) is rejected, not accepted', async () => {
    const h = await hello();
    const body = encodeClientHello(h.outer);
    const outer = decodeClientHello(body);
    const i = outer.extensions.findIndex((e) => e.type === ExtensionType.encrypted_client_hello);
    const tampered = body.slice();
    tampered[outer.extensionOffsets[i]! + outer.extensions[i]!.data.length - 1]! ^= 1;
    expect((await decryptClientHello(tampered, referenceLookup([key]))).status).toBe('rejected');
    const aad = body.slice();
    aad[2 + 5]! ^= 1; // a byte of ClientHelloOuter.random
    expect((await decryptClientHello(aad, referenceLookup([key]))).status).toBe('rejected');
  });
});

describe('decryptClientHello: every rule of §5.1 and §7.1 gets its alert', () => {
  const noop = () => undefined;
  const cases: Array<{ name: string; alert: string; msg?: RegExp; make: (h: EchClientHello) => Promise<Uint8Array> }> = [
    {
      name: 'ech_outer_extensions in ClientHelloOuter',
      alert: 'illegal_parameter',
      msg: /ech_outer_extensions in ClientHelloOuter/,
      make: (h) => sealCustom(h, h.encodedInner, (o) => o.extensions.unshift({ type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions([10]) })),
    },
    {
      name: 'inner-type ECH extension sent to a client-facing server',
      alert: 'illegal_parameter',
      msg: /inner-type/,
      make: async (h) => {
        const o = { ...h.outer, extensions: h.outer.extensions.map((e) => (e.type === ExtensionType.encrypted_client_hello ? { type: e.type, data: new Uint8Array([1]) } : e)) };
        return encodeClientHelloMessage(o);
      },
    },
    {
      name: 'unknown ECHClientHelloType',
      alert: 'illegal_parameter',
      msg: /unknown ECHClientHelloType/,
      make: async (h) => {
        const o = { ...h.outer, extensions: h.outer.extensions.map((e) => (e.type === ExtensionType.encrypted_client_hello ? { type: e.type, data: new Uint8Array([7, 0]) } : e)) };
        return encodeClientHelloMessage(o);
      },
    },
    {
      name: 'truncated outer ECH extension',
      alert: 'decode_error',
      make: async (h) => {
        const o = { ...h.outer, extensions: h.outer.extensions.map((e) => (e.type === ExtensionType.encrypted_client_hello ? { type: e.type, data: e.data.subarray(0, 10) } : e)) };
        return encodeClientHelloMessage(o);
      },
    },
    { name: 'non-zero padding', alert: 'illegal_parameter', msg: /non-zero padding/, make: (h) => sealCustom(h, new Uint8Array([...customInner(h, noop), 0, 0, 1, 0])) },
    {
      name: 'outer extension referenced but missing from ClientHelloOuter',
      alert: 'illegal_parameter',
      msg: /reference 0x0033 is missing/,
      make: (h) => sealCustom(h, h.encodedInner, (o) => (o.extensions = o.extensions.filter((e) => e.type !== ExtensionType.key_share))),
    },
    {
      name: 'outer extension referenced twice',
      alert: 'illegal_parameter',
      msg: /reference 0x0033 is missing, repeated/,
      make: (h) =>
        sealCustom(h, customInner(h, (i) => i.extensions.unshift({ type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions([ExtensionType.key_share, ExtensionType.key_share]) }), 0, [])),
    },
    {
      name: 'outer extensions referenced out of order',
      alert: 'illegal_parameter',
      msg: /reference 0x000a is missing, repeated or out of order/,
      make: (h) =>
        sealCustom(h, customInner(h, (i) => {
          i.extensions = i.extensions.filter((e) => e.type !== ExtensionType.key_share && e.type !== ExtensionType.supported_groups);
          i.extensions.unshift({ type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions([ExtensionType.key_share, ExtensionType.supported_groups]) });
        }, 0, [])),
    },
    {
      name: 'encrypted_client_hello referenced in OuterExtensions',
      alert: 'illegal_parameter',
      msg: /references encrypted_client_hello/,
      make: (h) =>
        sealCustom(h, customInner(h, (i) => i.extensions.unshift({ type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions([ExtensionType.encrypted_client_hello]) }), 0, [])),
    },
    {
      name: 'ech_outer_extensions twice in the encoded inner hello',
      alert: 'illegal_parameter',
      msg: /duplicate extension 0xfd00/,
      make: (h) =>
        sealCustom(h, customInner(h, (i) => {
          i.extensions.unshift({ type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions([ExtensionType.supported_groups]) });
          i.extensions.push({ type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions([ExtensionType.key_share]) });
        }, 0, [])),
    },
    {
      name: 'expansion duplicates an extension the inner hello already has',
      alert: 'illegal_parameter',
      msg: /duplicate extension 0x0033/,
      make: (h) =>
        sealCustom(h, customInner(h, (i) => i.extensions.unshift({ type: ExtensionType.ech_outer_extensions, data: encodeEchOuterExtensions([ExtensionType.key_share]) }), 0, [])),
    },
    {
      name: 'inner hello without the inner-type ECH extension',
      alert: 'illegal_parameter',
      msg: /lacks the inner-type/,
      make: (h) => sealCustom(h, customInner(h, (i) => (i.extensions = i.extensions.filter((e) => e.type !== ExtensionType.encrypted_client_hello)))),
    },
    {
      name: 'inner hello with an outer-type ECH extension',
      alert: 'illegal_parameter',
      msg: /lacks a well-formed inner-type/,
      make: (h) =>
        sealCustom(h, customInner(h, (i) => (i.extensions = i.extensions.map((e) => (e.type === ExtensionType.encrypted_client_hello ? findExtension(h.outer.extensions, e.type)! : e))))),
    },
    {
      name: 'inner hello offering TLS 1.2',
      alert: 'illegal_parameter',
      msg: /offers TLS 1.2 or below$/,
      make: (h) =>
        sealCustom(h, customInner(h, (i) => (i.extensions = i.extensions.map((e) => (e.type === ExtensionType.supported_versions ? { type: e.type, data: encodeSupportedVersions([0x0304, 0x0303]) } : e))), 0, [])),
    },
    {
      name: 'inner hello without supported_versions (TLS 1.2 by legacy_version)',
      alert: 'illegal_parameter',
      msg: /no supported_versions/,
      make: (h) => sealCustom(h, customInner(h, (i) => (i.extensions = i.extensions.filter((e) => e.type !== ExtensionType.supported_versions)), 0, [])),
    },
    {
      name: 'encoded inner hello with a non-empty legacy_session_id',
      alert: 'illegal_parameter',
      msg: /non-empty legacy_session_id/,
      make: async (h) => {
        const enc = customInner(h, noop);
        // set the session id length byte (offset 34) to 1 and insert a byte
        const withSid = new Uint8Array([...enc.subarray(0, 34), 1, 0xaa, ...enc.subarray(35)]);
        return sealCustom(h, withSid);
      },
    },
    { name: 'encoded inner hello that is not a ClientHello', alert: 'decode_error', make: (h) => sealCustom(h, new Uint8Array(40)) },
  ];
  for (const c of cases) {
    it(`${c.name} → ${c.alert}`, async () => {
      const h = await hello();
      await expectAlert(decryptClientHello(await c.make(h), referenceLookup([key])), c.alert, c.msg);
    });
  }
});

describe('decryptSecondClientHello (§7.1.1)', () => {
  async function first(): Promise<{ h: EchClientHello; a: EchAccepted }> {
    const h = await hello();
    const a = (await decryptClientHello(h.outerMessage, referenceLookup([key]))) as EchAccepted;
    expect(a.status).toBe('accepted');
    return { h, a };
  }
  const second = (h: EchClientHello) =>
    buildSecondEchClientHello({ ...spec(), keyShares: [{ group: 0x17, keyExchange: new Uint8Array(randomBytes(65)) }] }, h, {
      config: key.config,
      sealer: referenceSealer,
    });

  it('opens the second payload with the same context (sequence 1)', async () => {
    const { h, a } = await first();
    const s = await second(h);
    const r = await decryptSecondClientHello(s.outerMessage, a);
    expect(r.innerServerName).toBe('secret.example');
    expect(r.innerMessage).toEqual(s.innerMessage);
    expect(r.inner.random).toEqual(h.inner.random);
  });

  function withEch(s: EchClientHello, f: (d: ReturnType<typeof decodeEchClientHello>) => Uint8Array | undefined): Uint8Array {
    const exts = s.outer.extensions.flatMap((e) => {
      if (e.type !== ExtensionType.encrypted_client_hello) return [e];
      const d = f(decodeEchClientHello(e.data));
      return d ? [{ type: e.type, data: d }] : [];
    });
    return encodeClientHelloMessage({ ...s.outer, extensions: exts });
  }
  const outerFields = (d: ReturnType<typeof decodeEchClientHello>) => {
    if (d.type !== 'outer') throw new Error('not outer');
    return d;
  };

  const cases: Array<{ name: string; alert: string; f: (d: ReturnType<typeof decodeEchClientHello>) => Uint8Array | undefined }> = [
    { name: 'no encrypted_client_hello', alert: 'missing_extension', f: () => undefined },
    { name: 'config_id changed', alert: 'illegal_parameter', f: (d) => encodeEchClientHello({ ...outerFields(d), configId: 99 }) },
    { name: 'cipher suite changed', alert: 'illegal_parameter', f: (d) => encodeEchClientHello({ ...outerFields(d), aeadId: 3 }) },
    { name: 'enc not empty', alert: 'illegal_parameter', f: (d) => encodeEchClientHello({ ...outerFields(d), enc: new Uint8Array(32) }) },
    {
      name: 'tampered payload',
      alert: 'decrypt_error',
      f: (d) => {
        const o = outerFields(d);
        const p = o.payload.slice();
        p[0]! ^= 0xff;
        return encodeEchClientHello({ ...o, payload: p });
      },
    },
  ];
  for (const c of cases) {
    it(`${c.name} → ${c.alert}`, async () => {
      const { h, a } = await first();
      await expectAlert(decryptSecondClientHello(withEch(await second(h), c.f), a), c.alert);
    });
  }

  it('a replayed first ClientHelloOuter does not open at sequence 1 → decrypt_error', async () => {
    const { h, a } = await first();
    const replay = withEch(h, (d) => encodeEchClientHello({ ...outerFields(d), enc: new Uint8Array(0) }));
    await expectAlert(decryptSecondClientHello(replay, a), 'decrypt_error');
  });
});

describe('decryptClientHello under random damage', () => {
  it('mutated ClientHelloOuters give a result or a typed error, never anything else', async () => {
    const { default: fc } = await import('fast-check');
    const h = await hello();
    const lookup = referenceLookup([key]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(h.outerMessage.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), async (muts) => {
        const b = h.outerMessage.slice();
        for (const [i, v] of muts) b[i] = v;
        await decryptClientHello(b, lookup).catch((e: unknown) => {
          if (!(e instanceof EchError)) throw e;
        });
      }),
      { numRuns: 150 },
    );
  });

  it('damaged EncodedClientHelloInners that still decrypt give accepted or a typed error', async () => {
    const { default: fc } = await import('fast-check');
    const h = await hello();
    const lookup = referenceLookup([key]);
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(h.encodedInner.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), async (muts) => {
        const enc = h.encodedInner.slice();
        for (const [i, v] of muts) enc[i] = v;
        const r = await decryptClientHello(await sealCustom(h, enc), lookup).catch((e: unknown) => {
          if (!(e instanceof EchError)) throw e;
          expect(['decode_error', 'illegal_parameter']).toContain(e.alert);
          return undefined;
        });
        if (r) {
          expect(r.status).toBe('accepted');
          accepted++;
        }
      }),
      { numRuns: 120 },
    );
    // some mutations hit bytes that do not matter (e.g. random, key share data)
    expect(accepted).toBeGreaterThan(0);
  });
});
