/**
 * vitest global setup (see peers.ts): gives the workers a directory for skip
 * records and, when the run ends, prints ONE summary of the test files that
 * were skipped for missing peers, the peers, and the command that installs
 * them. Written to stderr, so a JSON reporter on stdout stays valid.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { type SkipRecord, skipSummary } from './peers.js';

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'ech-peer-skips-'));
  project.provide('echPeerSkipDir', dir);
  return () => {
    const byFile = new Map<string, SkipRecord>();
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
      const record = JSON.parse(readFileSync(join(dir, name), 'utf8')) as SkipRecord;
      byFile.set(record.file, record);
    }
    rmSync(dir, { recursive: true, force: true });
    const text = skipSummary([...byFile.values()], project.getProvidedContext().echPeers);
    if (text !== null) process.stderr.write(text);
  };
}
