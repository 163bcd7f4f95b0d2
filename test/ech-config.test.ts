import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  decodeEchConfig,
  decodeEchConfigList,
  encodeEchConfig,
  encodeEchConfigList,
  makeEchConfig,
  publicNameProblem,
} from '../src/ech/config.js';
import { encode } from '../src/wire/writer.js';
import { fromBase64 } from '../src/wire/bytes.js';
import { expectEveryPrefixFails, expectFuzzSafe } from './helpers/properties.js';

const fields = {
  configId: 42,
  kemId: 0x0020,
  publicKey: new Uint8Array(32).fill(5),
  cipherSuites: [
    { kdfId: 1, aeadId: 1 },
    { kdfId: 1, aeadId: 3 },
  ],
  maximumNameLength: 64,
  publicName: 'cover.example',
  extensions: [{ type: 0x1a1a, data: new Uint8Array([1]) }],
};

// RFC 9934 §3, Figure 1: the ECHConfigList of the example PEM file.
const RFC9934_LIST = 'AD7+DQA65wAgACA8wVN2BtscOl3vQheUzHeIkVmKIiydUhDCliA4iyQRCwAEAAEAAQALZXhhbXBsZS5jb20AAA==';

describe('ECHConfig', () => {
  it('round-trips', () => {
    const raw = encodeEchConfig(fields);
    const c = decodeEchConfig(raw);
    expect(c).toMatchObject({ ...fields, version: 0xfe0d });
    expect(c.raw).toEqual(raw);
    expect(encodeEchConfig(c)).toEqual(raw);
  });

  it('decodes the RFC 9934 example list', () => {
    const { configs, skipped } = decodeEchConfigList(fromBase64(RFC9934_LIST));
    expect(skipped).toEqual([]);
    expect(configs).toHaveLength(1);
    expect(configs[0]).toMatchObject({ configId: 0xe7, kemId: 0x20, publicName: 'example.com', maximumNameLength: 0 });
    expect(configs[0]!.cipherSuites).toEqual([{ kdfId: 1, aeadId: 1 }]);
    expect(encodeEchConfigList(configs)).toEqual(fromBase64(RFC9934_LIST));
  });

  it('every strict prefix fails, fuzzing throws only typed errors', () => {
    const raw = encodeEchConfig(fields);
    expectEveryPrefixFails(decodeEchConfig, raw);
    expectFuzzSafe(decodeEchConfig, raw);
    const list = encodeEchConfigList([raw, raw]);
    expectEveryPrefixFails(decodeEchConfigList, list);
    expectFuzzSafe(decodeEchConfigList, list);
  });

  it('property: random configs round-trip through a list', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ minLength: 1, maxLength: 133 }),
        fc.array(fc.record({ kdfId: fc.integer({ min: 0, max: 0xffff }), aeadId: fc.integer({ min: 0, max: 0xffff }) }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 255 }),
        (configId, publicKey, cipherSuites, maximumNameLength) => {
          const c = makeEchConfig({ ...fields, configId, publicKey, cipherSuites, maximumNameLength, extensions: [] });
          const { configs } = decodeEchConfigList(encodeEchConfigList([c, c]));
          expect(configs.map((x) => x.raw)).toEqual([c.raw, c.raw]);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('skips unknown versions and configs with unsupported mandatory extensions', () => {
    const good = encodeEchConfig(fields);
    const unknownVersion = encode((w) => w.u16(0xfe0c).bytes16(new Uint8Array([1, 2, 3])));
    const mandatory = encodeEchConfig({ ...fields, configId: 7, extensions: [{ type: 0x8001, data: new Uint8Array(0) }] });
    const { configs, skipped } = decodeEchConfigList(encodeEchConfigList([unknownVersion, mandatory, good]));
    expect(configs.map((c) => c.configId)).toEqual([42]);
    expect(skipped.map((s) => s.reason)).toEqual(['unknown-version', 'unsupported-mandatory-extension']);
  });

  it('rejects trailing bytes, duplicate extensions, bad lengths and an empty list', () => {
    const raw = encodeEchConfig(fields);
    expect(() => decodeEchConfigList(new Uint8Array([...encodeEchConfigList([raw]), 0]))).toThrow(expect.objectContaining({ alert: 'decode_error' }));
    const dup = encodeEchConfig({ ...fields, extensions: [{ type: 1, data: new Uint8Array(0) }, { type: 1, data: new Uint8Array(0) }] });
    expect(() => decodeEchConfig(dup)).toThrow(/duplicate ECHConfig extension/);
    expect(() => decodeEchConfigList(new Uint8Array([0, 0]))).toThrow(expect.objectContaining({ alert: 'decode_error' }));
    const badSuites = raw.slice();
    // cipher_suites length at offset 4 + 1 + 2 + 2 + 32 = 41: make it 6 (not a multiple of 4)
    badSuites[42] = 6;
    expect(() => decodeEchConfig(badSuites)).toThrow(expect.objectContaining({ alert: 'decode_error' }));
  });

  it('validates public_name as a DNS name, never an IPv4 literal (RFC 9849 §6.1.7)', () => {
    for (const ok of ['cover.example', 'a', 'xn--bcher-kva.example', 'a-b.c0']) expect(publicNameProblem(ok)).toBeUndefined();
    const bad = ['', '.example', 'example.', 'a..b', 'under_score.example', '-a.example', '192.0.2.1', '1.2.3.0x1f', 'foo.0x', 'example.123', 'x'.repeat(64) + '.example', 'spa ce.example'];
    for (const b of bad) expect(publicNameProblem(b), b).toBeDefined();
    expect(() => encodeEchConfig({ ...fields, publicName: '10.0.0.1' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
