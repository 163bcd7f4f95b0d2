/**
 * `ech-server fleet`: fleet mode helpers (docs/fleet.md).
 * - `fleet kek --out FILE`: write a new key-encryption key (mode 0600).
 * - `fleet status --config FILE`: one JSON object from etcd: leader,
 *   members and the key ids each has loaded, the list last published,
 *   the next rotation.
 *
 * @module
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { EchError } from '../wire/alert.js';
import { writeNewKekFile } from '../fleet/kek.js';
import { fleetStatus } from '../fleet/status.js';
import { loadServeConfig } from '../front/config.js';

/**
 * `--help` text of `ech-server fleet`.
 * @group CLI
 * @example
 * ```ts
 * process.stdout.write(FLEET_USAGE);
 * ```
 */
export const FLEET_USAGE = `ech-server fleet kek --out FILE
ech-server fleet status --config FILE

Fleet mode: several front ends share ECH keys and session-ticket keys
through etcd and rotate as one (the "fleet" section of the serve config,
docs/fleet.md).

  kek --out FILE       write a new key-encryption key (32 random bytes,
                       base64) to FILE with mode 0600; copy it to every
                       member. Never overwrites a file.
  status --config FILE print one JSON object read from etcd: leader,
                       members (name, keyIds, ticketIds), published (the
                       base64 ECHConfigList last published), nextRotation,
                       keys (id, configId, phase), waitingFor.`;

/**
 * Run `ech-server fleet ARGS`; resolves to the exit code (1 with one line
 * on stderr for a file, etcd or KEK problem; 2 for a usage error).
 * @group CLI
 * @example
 * ```ts
 * process.exitCode = await runFleet(['kek', '--out', '/etc/ech-server/fleet.kek']);
 * ```
 */
export async function runFleet(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const usage = (m: string) => {
    process.stderr.write(`ech-server fleet: ${m}\n\n${FLEET_USAGE}\n`);
    return 2;
  };
  let values: { out?: string | undefined; config?: string | undefined };
  try {
    ({ values } = parseArgs({ args: rest, options: { out: { type: 'string' }, config: { type: 'string' } }, strict: true }));
  } catch (e) {
    return usage((e as Error).message);
  }
  try {
    if (sub === 'kek') {
      if (!values.out) return usage('kek needs --out FILE');
      const kek = await writeNewKekFile(resolve(values.out));
      process.stdout.write(`${JSON.stringify({ file: kek.source, fingerprint: kek.fingerprint })}\n`);
      return 0;
    }
    if (sub === 'status') {
      if (!values.config) return usage('status needs --config FILE');
      const config = await loadServeConfig(values.config);
      if (!config.fleet) {
        process.stderr.write(`ech-server fleet status: ${values.config} has no "fleet" section\n`);
        return 1;
      }
      process.stdout.write(`${JSON.stringify(await fleetStatus(config.fleet))}\n`);
      return 0;
    }
    return usage(sub ? `unknown subcommand '${sub}'` : 'a subcommand is required (kek, status)');
  } catch (e) {
    if (e instanceof EchError) {
      process.stderr.write(`ech-server fleet ${sub}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
