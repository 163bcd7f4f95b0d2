// The package as a user gets it: which entry points it has and what each
// exports (the root small, internals in none), what `npm pack` ships, that
// the packed tarball installs and loads with require() from a CommonJS app
// and import() from an ES module one, that the examples copied into an app
// type-check and run against it, and that the typedoc site has the guides
// as pages and one module per entry point.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  engines: { node: string };
  exports: Record<string, string | { types: string; default: string }>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
/** '.', './keys', ... */
const SUBPATHS = Object.keys(pkg.exports).filter((k) => k !== './package.json');
const specifier = (sub: string) => (sub === '.' ? 'ech-server' : `ech-server/${sub.slice(2)}`);
const entryFile = (sub: string) => (sub === '.' ? 'src/index.ts' : `src/${sub.slice(2)}.ts`);
const GUIDES = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'));
const EXAMPLES = readdirSync(join(ROOT, 'examples')).filter((f) => f.endsWith('.ts'));

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(cmd, args, { cwd, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NODE = process.execPath;

// ------------------------------------------------------------ the entry points, from the sources

/** Every name (values and types) each entry file exports, by the TypeScript checker. */
function entryExports(): Map<string, string[]> {
  const files = SUBPATHS.map((s) => join(ROOT, entryFile(s)));
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const out = new Map<string, string[]>();
  for (const sub of SUBPATHS) {
    const sf = program.getSourceFile(join(ROOT, entryFile(sub)))!;
    out.set(sub, checker.getExportsOfModule(checker.getSymbolAtLocation(sf)!).map((s) => s.name).sort());
  }
  return out;
}

/** `import { a, type B } from 'ech-server/x'` and `import('ech-server').C` in a text. */
function packageImports(text: string): Array<{ spec: string; name: string }> {
  const found: Array<{ spec: string; name: string }> = [];
  for (const m of text.matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s*from\s*'(ech-server(?:\/[\w-]+)?)'/g)) {
    for (const part of m[1]!.split(',')) {
      const name = part.trim().replace(/^type\s+/, '').split(/\s+as\s+/)[0]!.trim();
      if (name) found.push({ spec: m[2]!, name });
    }
  }
  for (const m of text.matchAll(/import\('(ech-server(?:\/[\w-]+)?)'\)\.(\w+)/g)) found.push({ spec: m[1]!, name: m[2]! });
  return found;
}

describe('entry points', () => {
  let exported: Map<string, string[]>;
  let root: string[];
  beforeAll(() => {
    exported = entryExports();
    root = exported.get('.')!;
  }, 120_000);

  it('the root entry is the small public surface: server, front end, keys, decryption core, client, errors', () => {
    expect(root.length).toBeGreaterThan(20);
    expect(root.length).toBeLessThan(80);
    expect(root).toEqual(
      expect.arrayContaining([
        'createEchServer',
        'createEchHook',
        'TlsSocket',
        'EchFrontEnd',
        'EchKeySet',
        'generateEchKey',
        'loadEchKeyDirectory',
        'writeEchKeyFile',
        'EchKeyManager',
        'encodeEchConfigList',
        'decryptClientHello',
        'readFirstHandshakeMessage',
        'connectEch',
        'EchError',
        'EchRejectedError',
      ]),
    );
    // internals: record layer, key schedule, HKDF, codecs, byte reader/writer
    for (const internal of ['RecordLayer', 'RecordProtection', 'KeySchedule', 'trafficKeys', 'hkdfExpandLabel', 'Transcript', 'encodeKeyShareClient', 'decodeServerName', 'encodeEchClientHello', 'decodeClientHello', 'HandshakeReassembler', 'Reader', 'Writer', 'encodeProxyV2', 'tsigSign', 'encodeKeylessRequest']) {
      expect(root, internal).not.toContain(internal);
    }
  });

  it('the record layer, the key schedule, HKDF and the extension codecs are in no entry point', () => {
    const all = new Set([...exported.values()].flat());
    const sf = ts.createSourceFile('x.ts', readFileSync(join(ROOT, 'src/tls/extensions.ts'), 'utf8'), ts.ScriptTarget.ES2022, true);
    const codecs = sf.statements.filter((s): s is ts.FunctionDeclaration => ts.isFunctionDeclaration(s) && !!s.name && !!(ts.getCombinedModifierFlags(s) & ts.ModifierFlags.Export)).map((s) => s.name!.text);
    expect(codecs).toEqual(expect.arrayContaining(['encodeKeyShareClient', 'decodeKeyShareClient', 'encodeServerName', 'decodeEchClientHello']));
    for (const internal of [...codecs, 'RecordLayer', 'RecordProtection', 'KeySchedule', 'trafficKeys', 'nextTrafficSecret', 'hkdfExpandLabel', 'hkdfExtract', 'Transcript', 'loadKeyDirectoryWith']) {
      expect(all.has(internal), internal).toBe(false);
    }
  });

  it('every name README.md, docs/*.md and examples/ import from the package is exported by that entry point', () => {
    const texts = [join(ROOT, 'README.md'), ...GUIDES.map((g) => join(ROOT, 'docs', g)), ...EXAMPLES.map((e) => join(ROOT, 'examples', e))];
    const imports = texts.flatMap((f) => packageImports(readFileSync(f, 'utf8')).map((i) => ({ ...i, file: basename(f) })));
    expect(imports.length).toBeGreaterThan(30);
    const missing = imports.filter((i) => {
      const sub = i.spec === 'ech-server' ? '.' : `./${i.spec.slice('ech-server/'.length)}`;
      return !exported.get(sub)?.includes(i.name);
    });
    expect(missing).toEqual([]);
    // the examples name the package only, never the repo's files
    for (const e of EXAMPLES) expect(readFileSync(join(ROOT, 'examples', e), 'utf8'), e).not.toMatch(/from '\.\.?\//);
  });

  it('package.json exports, the entry files, their @module names and typedoc.json entryPoints agree', () => {
    const typedoc = JSON.parse(readFileSync(join(ROOT, 'typedoc.json'), 'utf8')) as { entryPoints: string[]; projectDocuments: string[] };
    expect([...typedoc.entryPoints].sort()).toEqual(SUBPATHS.map(entryFile).sort());
    expect(typedoc.projectDocuments).toEqual(['docs/*.md']);
    for (const sub of SUBPATHS) {
      const base = entryFile(sub).replace(/^src\//, './dist/').replace(/\.ts$/, '');
      expect(pkg.exports[sub], sub).toEqual({ types: `${base}.d.ts`, default: `${base}.js` });
      expect(readFileSync(join(ROOT, entryFile(sub)), 'utf8'), sub).toContain(`@module ${specifier(sub)}\n`);
    }
  });

  it('@noble/curves and @noble/hashes are test-only: devDependencies, and no file in src/ imports them', () => {
    const files = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]));
    const users = files(join(ROOT, 'src')).filter((f) => /from '@noble\/(curves|hashes)/.test(readFileSync(f, 'utf8')));
    expect(users).toEqual([]);
    for (const dep of ['@noble/curves', '@noble/hashes']) {
      expect(pkg.dependencies[dep], dep).toBeUndefined();
      expect(pkg.devDependencies[dep], dep).toBeDefined();
    }
  });
});

// ------------------------------------------------------------ the packed tarball

/**
 * dist/ must be built from the current sources (`npm test` builds first).
 * Not rebuilt here: other test files run dist/cli at the same time.
 */
function assertBuilt(): void {
  const files = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]));
  const built = join(ROOT, 'dist/index.js');
  const newest = Math.max(...files(join(ROOT, 'src')).map((f) => statSync(f).mtimeMs), statSync(join(ROOT, 'tsconfig.build.json')).mtimeMs);
  if (!existsSync(built) || statSync(built).mtimeMs < newest) throw new Error('dist/ is missing or older than src/: run `npm run build` (`npm test` does)');
}

/** Installs the tarball with its dependencies from the npm cache, or, missing there, from the registry. */
async function install(dir: string, tarball: string): Promise<void> {
  const args = ['install', tarball, '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock'];
  let r = await run(NPM, [...args, '--offline'], dir);
  if (r.code !== 0 && /ENOTCACHED/.test(r.stderr)) r = await run(NPM, [...args, '--prefer-offline'], dir);
  if (r.code !== 0) throw new Error(`npm install ${tarball} failed:\n${r.stderr}`);
}

describe('the packed tarball', () => {
  let work: string;
  let tarball: string;
  let files: string[];
  let unpacked: string;
  let app: string;

  beforeAll(async () => {
    assertBuilt();
    work = await mkdtemp(join(tmpdir(), 'ech-package-'));
    const packed = await run(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    const info = (JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>)[0]!;
    tarball = join(work, info.filename);
    files = info.files.map((f) => f.path).sort();
    unpacked = join(work, 'unpacked');
    await mkdir(unpacked);
    const x = await run('tar', ['xzf', tarball, '-C', unpacked], work);
    expect(x.code, x.stderr).toBe(0);
    // a CommonJS app (no "type": "module") with the tarball installed
    app = join(work, 'app');
    await mkdir(app);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'cjs-app', version: '1.0.0', private: true }));
    await install(app, tarball);
  }, 600_000);
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ships dist/, LICENSE, README.md, the guides and the examples; no bench/fuzz/soak, source maps, sources or tests', async () => {
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/cli/main.js', ...GUIDES.map((g) => `docs/${g}`), ...EXAMPLES.map((e) => `examples/${e}`)]));
    for (const sub of SUBPATHS) {
      const e = pkg.exports[sub] as { types: string; default: string };
      expect(files).toContain(e.types.slice(2));
      expect(files).toContain(e.default.slice(2));
    }
    const unwanted = files.filter((f) => /^dist\/(bench|fuzz|soak)\/|\.map$|^src\/|^test\/|^dist-check\/|^docs\/api\/|node_modules/.test(f));
    expect(unwanted).toEqual([]);
    const withMaps = files.filter((f) => /\.(js|d\.ts)$/.test(f) && /sourceMappingURL/.test(readFileSync(join(unpacked, 'package', f), 'utf8')));
    expect(withMaps).toEqual([]);
    const license = await readFile(join(unpacked, 'package/LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License/);
    expect(license).toMatch(/Copyright \(c\) \d{4} ech-server contributors/);
    expect(pkg).toMatchObject({ license: 'MIT' });
    // the README's links to the guides land on shipped files
    const readme = await readFile(join(unpacked, 'package/README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\((docs\/[\w-]+\.md)\)/g)].map((m) => m[1]!);
    expect(linked.length).toBeGreaterThanOrEqual(GUIDES.length);
    for (const l of linked) expect(files, l).toContain(l);
  });

  it(`require() from a CommonJS app loads every entry point (engines ${pkg.engines.node}: require(esm)); import() gives the same names; internals are not reachable`, async () => {
    const specs = SUBPATHS.map(specifier);
    const cjs = await run(NODE, ['-e', `const out = {}; for (const s of ${JSON.stringify(specs)}) out[s] = Object.keys(require(s)).sort(); out.version = require('ech-server/package.json').version; console.log(JSON.stringify(out));`], app);
    expect(cjs.code, cjs.stderr).toBe(0);
    expect(cjs.stderr).toBe(''); // no ExperimentalWarning
    const viaRequire = JSON.parse(cjs.stdout) as Record<string, string[] | string>;
    const esm = await run(NODE, ['--input-type=module', '-e', `const out = {}; for (const s of ${JSON.stringify(specs)}) out[s] = Object.keys(await import(s)).filter((k) => k !== 'default').sort(); console.log(JSON.stringify(out));`], app);
    expect(esm.code, esm.stderr).toBe(0);
    const viaImport = JSON.parse(esm.stdout) as Record<string, string[]>;
    expect(viaRequire.version).toBe(pkg.version);
    for (const s of specs) {
      expect((viaRequire[s] as string[]).length, s).toBeGreaterThan(1);
      expect(viaRequire[s], s).toEqual(viaImport[s]);
    }
    expect(viaRequire['ech-server']).toEqual(expect.arrayContaining(['createEchServer', 'EchFrontEnd', 'EchKeySet', 'decryptClientHello', 'EchError']));
    expect(viaRequire['ech-server']).not.toContain('RecordLayer');
    // a deep import of an internal file is refused by the exports map
    const deep = await run(NODE, ['-e', `try { require('ech-server/dist/tls13/record-layer.js'); } catch (e) { console.log(e.code); }`], app);
    expect(deep.stdout.trim()).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
    // engines says what this relies on, and the Node running this is one it allows
    // (require(esm) without a flag: 20.19+, 22.12+; 21 and 22.0-22.11 need --experimental-require-module)
    expect(pkg.engines.node).toBe('^20.19.0 || >=22.12.0');
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    expect((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major >= 23).toBe(true);
    expect(process.features).toMatchObject({ require_module: true });
  }, 60_000);

  it('a TypeScript CommonJS module (.cts) gets the types of the installed package and runs', async () => {
    const dir = join(app, 'cts');
    await mkdir(dir);
    await writeFile(
      join(dir, 'main.cts'),
      [
        "import { EchKeySet, generateEchKey, encodeEchConfigList, type EchConfig } from 'ech-server';",
        "import { createTestPki } from 'ech-server/testing';",
        "const key = generateEchKey({ publicName: 'cover.example' });",
        'const config: EchConfig = key.config;',
        "console.log(JSON.stringify({ configs: new EchKeySet([key]).retryConfigList()?.length === encodeEchConfigList([config]).length, pem: createTestPki().issue(['a.example']).cert.startsWith('-----BEGIN CERTIFICATE-----') }));",
      ].join('\n'),
    );
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')], outDir: 'out' },
        files: ['main.cts'],
      }),
    );
    const tsc = await run(NODE, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], dir);
    expect(tsc.code, tsc.stdout + tsc.stderr).toBe(0);
    const r = await run(NODE, [join(dir, 'out/main.cjs')], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ configs: true, pem: true });
  }, 60_000);

  it('the examples, copied into an app, type-check against the installed package and run', async () => {
    const esmApp = join(app, 'esm');
    await mkdir(esmApp);
    await writeFile(join(esmApp, 'package.json'), JSON.stringify({ name: 'esm-app', version: '1.0.0', private: true, type: 'module' }));
    for (const e of EXAMPLES) await copyFile(join(unpacked, 'package/examples', e), join(esmApp, e));
    await writeFile(
      join(esmApp, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
          rootDir: '.',
          outDir: 'out',
        },
        include: ['*.ts'],
      }),
    );
    const tsc = await run(NODE, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', esmApp], esmApp);
    expect(tsc.code, tsc.stdout + tsc.stderr).toBe(0);
    const r = await run(
      NODE,
      [
        '--input-type=module',
        '-e',
        `const d = await import('./out/decrypt-first-flight.js'); const c = await import('./out/cover-domain.js');
         const visits = await c.main();
         console.log(JSON.stringify({ decrypt: await d.main(), cover: visits.map((v) => [v.client, v.echStatus, v.page.innerServerName]) }));`,
      ],
      esmApp,
      60_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { decrypt: string; cover: Array<[string, string, string | null]> };
    expect(out.decrypt).toBe('accepted, inner SNI hidden.example');
    expect(out.cover.filter(([c]) => c !== 'GREASE ECH')).toEqual([
      ['ECH to alpha.example', 'accepted', 'alpha.example'],
      ['ECH to gamma.example', 'accepted', 'gamma.example'],
      ['stale ECH config, retry', 'accepted', 'beta.example'],
      ['no ECH', 'not-offered', null],
    ]);
  }, 120_000);
});

// ------------------------------------------------------------ the typedoc site

describe('typedoc site', () => {
  it('renders every guide in docs/ as a page and one module per entry point', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ech-typedoc-'));
    try {
      const r = await run(NODE, [join(ROOT, 'node_modules/typedoc/bin/typedoc'), '--out', out, '--logLevel', 'Warn'], ROOT, 300_000);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout + r.stderr).not.toMatch(/warning|error/i);
      for (const g of GUIDES) {
        const page = join(out, 'documents', g.replace(/\.md$/, '.html'));
        expect(existsSync(page), page).toBe(true);
        const title = /^# (.+)$/m.exec(readFileSync(join(ROOT, 'docs', g), 'utf8'))![1]!.replace(/`/g, '');
        expect(readFileSync(page, 'utf8').replace(/<[^>]+>/g, ''), g).toContain(title.replace(/&/g, '&amp;'));
      }
      expect(existsSync(join(out, 'media')) ? readdirSync(join(out, 'media')).filter((f) => f.endsWith('.md')) : []).toEqual([]);
      const modules = readdirSync(join(out, 'modules')).sort();
      expect(modules).toEqual(SUBPATHS.map((s) => `${specifier(s).replace('/', '_')}.html`).sort());
      // the README (the site's front page) links the guides to their pages
      const index = readFileSync(join(out, 'index.html'), 'utf8');
      for (const g of GUIDES.filter((x) => readFileSync(join(ROOT, 'README.md'), 'utf8').includes(`docs/${x}`))) {
        expect(index, g).toContain(`href="documents/${g.replace(/\.md$/, '.html')}"`);
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);
});
