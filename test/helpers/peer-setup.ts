/**
 * vitest setup file (see peers.ts), run before each test file is imported:
 * when the file's `peer-*` tags name a missing peer, it fails the file in CI
 * (an error naming the peers and the install command) and otherwise records
 * the skip for the summary (the tags themselves make vitest skip the tests).
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestRunner, inject } from 'vitest';
import { peersOfTags } from '../peers/detect.js';
import { ciFailureMessage, type SkipRecord } from './peers.js';

const file = TestRunner.getCurrentSuite().file;
const needs = peersOfTags(file.tags ?? []);
const missing = needs.length === 0 ? [] : inject('echPeers').missing.filter((m) => needs.includes(m.id));
if (missing.length > 0) {
  if (inject('echPeers').ci) throw new Error(ciFailureMessage(file.name, missing));
  const record: SkipRecord = { file: file.name, peers: missing.map((m) => m.id) };
  writeFileSync(join(inject('echPeerSkipDir'), `${randomUUID()}.json`), JSON.stringify(record));
}
