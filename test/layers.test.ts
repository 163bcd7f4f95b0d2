// The import graph of src/ points one way, top to bottom (DESIGN.md, issue
// 17): the checker in helpers/layers.ts over the real tree, and the checker
// itself against planted violations so a broken checker cannot pass silently.
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { LAYERS, checkLayers, foldersOf, importsOf, readTree } from './helpers/layers.js';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

describe('layers of src/', () => {
  it('no import in src/ runs up or sideways', () => {
    const files = readTree(SRC);
    expect(files.size).toBeGreaterThan(50);
    expect(checkLayers(files).map((v) => v.message)).toEqual([]);
  });

  it('the layer table names every folder of src/', () => {
    const named = new Set(LAYERS.flat());
    expect(foldersOf(SRC).filter((f) => !named.has(f))).toEqual([]);
  });

  it('keyless imports neither front nor tls13 (the two arrows issue 17 turned round)', () => {
    const files = readTree(SRC);
    const bad = [...files].filter(
      ([f, s]) => f.startsWith('keyless/') && importsOf(s).some((i) => /\.\.\/(front|tls13)\//.test(i)),
    );
    expect(bad.map(([f]) => f)).toEqual([]);
  });

  it('TLS 1.3 is cited by its published number, RFC 9846 (../shared/spec), not the 8446bis draft', () => {
    const files = readTree(SRC);
    const draft = [...files].filter(([, s]) => /8446\s*bis/i.test(s)).map(([f]) => f);
    expect(draft).toEqual([]);
    expect([...files].filter(([, s]) => s.includes('RFC 9846')).length).toBeGreaterThan(20);
  });
});

describe('the layer checker', () => {
  it('reads every form of import', () => {
    const src = [
      "import { a } from '../wire/reader.js';",
      "import type { B } from '../front/log.js';",
      'import {',
      '  c,',
      '  d,',
      "} from '../tls/record.js';",
      "export { e } from './sibling.js';",
      "export * from '../ech/config.js';",
      "const m = await import('../cli/main.js');",
      "import { readFileSync } from 'node:fs';",
      "import ts from 'typescript';",
    ].join('\n');
    expect(importsOf(src)).toEqual([
      '../wire/reader.js',
      '../front/log.js',
      '../tls/record.js',
      './sibling.js',
      '../ech/config.js',
      '../cli/main.js',
    ]);
  });

  it('fails on planted upward, sideways, unknown and outside imports, and passes the downward ones', () => {
    const files = new Map([
      ['keyless/server.ts', "import type { LogSink } from '../front/log.js';\nimport { x } from '../keys/key-set.js';"],
      ['keyless/client.ts', "import { ServerCertificate } from '../tls13/certificates.js';"],
      ['dns/tsig.ts', "import { y } from '../wire/reader.js';\nimport { z } from './errors.js';"],
      ['wire/reader.ts', "export type { K } from '../crypto/hpke.js';"],
      ['front/front-end.ts', "const c = await import('../cli/main.js');\nimport { k } from '../keyless/client.js';"],
      ['ech/decrypt.ts', "import { q } from '../newthing/q.js';"],
      ['newthing/q.ts', "import { w } from '../wire/bytes.js';"],
      ['tls/scan.ts', "import { o } from '../../test/helpers/x.js';"],
      ['index.ts', "export * from './tls13/index.js';\nexport * from './keys.js';"],
      ['cli/main.ts', "import { t } from '../testing/pki.js';\nimport { f } from '../front/serve.js';"],
      ['testing/pki.ts', "import { c } from '../cli/main.js';"],
    ]);
    const got = checkLayers(files).map((v) => [v.file, v.kind]);
    expect(got).toEqual([
      ['keyless/server.ts', 'up'],
      ['keyless/client.ts', 'sideways'],
      ['wire/reader.ts', 'up'],
      ['front/front-end.ts', 'up'],
      ['ech/decrypt.ts', 'unknown-layer'],
      ['newthing/q.ts', 'unknown-layer'],
      ['tls/scan.ts', 'outside-src'],
      ['testing/pki.ts', 'up'],
    ]);
  });

  it('a sideways import between two folders of one rank fails whichever way it points', () => {
    const files = new Map([
      ['dns/a.ts', "import { k } from '../keyless/client.js';"],
      ['keyless/b.ts', "import { d } from '../dns/tsig.js';"],
      ['fleet/c.ts', "import { t } from '../tls13/server.js';"],
      ['bench/main.ts', "import { e } from '../index.js';"],
    ]);
    expect(checkLayers(files).map((v) => v.kind)).toEqual(['sideways', 'sideways', 'sideways', 'sideways']);
  });
});
