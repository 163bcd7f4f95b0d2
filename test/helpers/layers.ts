/**
 * The layer table of `src/` and a checker over its import graph
 * (test/layers.test.ts runs it in `npm test`, so in CI).
 *
 * Arrows point one way, top to bottom (DESIGN.md): an import may only reach a
 * folder of a LOWER rank, or stay in its own folder. An import into a folder
 * of a higher rank runs back up; one into another folder of the SAME rank
 * runs sideways (`dns`, `keyless` and `fleet` sit beside `tls13` and must not
 * know each other). Both fail, and so does a folder the table does not name:
 * a new folder declares its layer here first.
 *
 * The imports are read with the TypeScript compiler's own pre-processor, so
 * `import type`, `export … from`, dynamic `import()` and imports spread over
 * several lines all count.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, relative, sep } from 'node:path';
import ts from 'typescript';

/**
 * Ranks, lowest first. Each inner list is one rank; folders of one rank are
 * siblings. `(entry)` stands for the files directly in `src/` (the package's
 * entry points), which may re-export anything below them and each other;
 * `bench` and `soak` are programs over the whole library, beside them; `fuzz`
 * (the fuzz targets and their seeded random source, which the soak reuses)
 * sits just below.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['wire', 'log'],
  ['crypto'],
  ['tls'],
  ['ech'],
  ['keys'],
  ['tls13', 'dns', 'keyless', 'fleet'],
  ['front'],
  ['testing'],
  ['cli'],
  ['fuzz'],
  ['(entry)', 'bench', 'soak'],
];

/** The layer name of a file given relative to `src/` with `/` separators. */
export function layerOf(file: string): string {
  const parts = file.split('/');
  return parts.length === 1 ? '(entry)' : parts[0]!;
}

function rankOf(layer: string, layers: readonly (readonly string[])[]): number | undefined {
  const i = layers.findIndex((rank) => rank.includes(layer));
  return i < 0 ? undefined : i;
}

/** One import that breaks the layering. */
export interface LayerViolation {
  /** The importing file, relative to `src/`. */
  file: string;
  /** The specifier as written. */
  specifier: string;
  /** `up`, `sideways`, `unknown-layer` (a folder missing from the table) or `outside-src`. */
  kind: 'up' | 'sideways' | 'unknown-layer' | 'outside-src';
  /** A readable line: `keyless/server.ts -> front/log.ts (up: keyless -> front)`. */
  message: string;
}

/** The relative imports of one source text (module specifiers as written). */
export function importsOf(source: string): string[] {
  const info = ts.preProcessFile(source, true, true);
  return info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.'));
}

/**
 * Checks a set of files (path relative to `src/`, `/`-separated → source text)
 * against a layer table; returns every violation, in file order.
 */
export function checkLayers(
  files: ReadonlyMap<string, string>,
  layers: readonly (readonly string[])[] = LAYERS,
): LayerViolation[] {
  const out: LayerViolation[] = [];
  for (const [file, source] of files) {
    const from = layerOf(file);
    const fromRank = rankOf(from, layers);
    if (fromRank === undefined) {
      out.push({ file, specifier: '', kind: 'unknown-layer', message: `${file}: folder '${from}' is not in the layer table` });
      continue;
    }
    for (const specifier of importsOf(source)) {
      const target = posix.normalize(posix.join(posix.dirname(file), specifier));
      if (target.startsWith('../') || target === '..') {
        out.push({ file, specifier, kind: 'outside-src', message: `${file} -> ${specifier} (outside src/)` });
        continue;
      }
      const to = layerOf(target);
      if (to === from) continue;
      const toRank = rankOf(to, layers);
      if (toRank === undefined) {
        out.push({ file, specifier, kind: 'unknown-layer', message: `${file} -> ${target}: folder '${to}' is not in the layer table` });
      } else if (toRank > fromRank) {
        out.push({ file, specifier, kind: 'up', message: `${file} -> ${target} (up: ${from} -> ${to})` });
      } else if (toRank === fromRank) {
        out.push({ file, specifier, kind: 'sideways', message: `${file} -> ${target} (sideways: ${from} -> ${to})` });
      }
    }
  }
  return out;
}

/** Every `.ts` file under `dir`, as a map relative path (`/`-separated) → source. */
export function readTree(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.set(relative(dir, p).split(sep).join('/'), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return files;
}

/** The folders directly under `dir` (for checking that the table names them all). */
export function foldersOf(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isDirectory())
    .sort();
}
