// Every export of src/ carries a TSDoc comment (DEVELOPERS.md: "TSDoc on every
// export"). Uses the TypeScript compiler's parser, so it sees what typedoc sees.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function isExported(node: ts.Node): boolean {
  return !!(ts.getCombinedModifierFlags(node as ts.Declaration) & ts.ModifierFlags.Export);
}

function hasDoc(node: ts.Node, sf: ts.SourceFile): boolean {
  const ranges = ts.getLeadingCommentRanges(sf.text, node.getFullStart()) ?? [];
  return ranges.some((r) => sf.text.slice(r.pos, r.end).startsWith('/**'));
}

describe('TSDoc', () => {
  it('every exported declaration in src/ has a /** */ comment', () => {
    const missing: string[] = [];
    for (const f of files(SRC)) {
      const sf = ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.ES2022, true);
      for (const st of sf.statements) {
        if (ts.isExportDeclaration(st) || ts.isImportDeclaration(st) || ts.isExportAssignment(st)) continue;
        if (!isExported(st)) continue;
        if (!hasDoc(st, sf)) {
          const name =
            (st as { name?: ts.Identifier }).name?.text ??
            (ts.isVariableStatement(st) ? st.declarationList.declarations.map((d) => d.name.getText(sf)).join(',') : st.kind);
          missing.push(`${relative(SRC, f)}:${sf.getLineAndCharacterOfPosition(st.getStart(sf)).line + 1} ${String(name)}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});
