/**
 * `npm run fuzz -- [--seconds N] [--seed S] [--target NAME] [--max-inputs N]`:
 * mutation and structure-aware fuzzing of the parsers, the ECH decryption
 * core and the TLS 1.3 server engine (see ./targets.ts). Each failure is
 * printed with its target and a minimized reproducer in hex; the run ends
 * with `fuzz: N inputs, N failures` and exits 1 if there was any failure.
 *
 * `--replay TARGET HEX` runs one input (with the same `--seed`, which the
 * keys are derived from) and says whether it fails.
 *
 * Development tool: built to dist/fuzz/, not part of the library's API.
 *
 * @module
 */
import { pathToFileURL } from 'node:url';
import { runFuzz, runOne, type FuzzTarget } from './engine.js';
import { projectTargets } from './targets.js';
import { Watchdog } from './watchdog.js';

interface Args {
  seconds: number;
  seed: number;
  targets: string[];
  maxInputs?: number;
  replay?: { target: string; hex: string };
  quiet: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Args {
  const a: Args = { seconds: 60, seed: 1, targets: [], quiet: false };
  const num = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0) throw new UsageError(`${flag} needs a non-negative number`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    if (f === '--seconds') a.seconds = num(f, argv[++i]);
    else if (f === '--seed') a.seed = Math.floor(num(f, argv[++i]));
    else if (f === '--max-inputs') a.maxInputs = Math.floor(num(f, argv[++i]));
    else if (f === '--target') a.targets.push(argv[++i] ?? '');
    else if (f === '--quiet') a.quiet = true;
    else if (f === '--replay') {
      const target = argv[++i];
      const hex = argv[++i];
      if (!target || hex === undefined || !/^([0-9a-f]{2})*$/i.test(hex)) throw new UsageError('--replay needs TARGET HEX');
      a.replay = { target, hex };
    } else throw new UsageError(`unknown option ${f}`);
  }
  return a;
}

function select(all: FuzzTarget[], names: string[]): FuzzTarget[] {
  if (names.length === 0) return all;
  return names.map((n) => {
    const t = all.find((x) => x.name === n);
    if (!t) throw new UsageError(`unknown target ${n} (targets: ${all.map((x) => x.name).join(', ')})`);
    return t;
  });
}

/**
 * Run the fuzzer CLI; resolves to the exit code.
 * @group Fuzz
 * @example
 * ```ts
 * process.exitCode = await fuzzMain(['--seconds', '10', '--seed', '7']);
 * ```
 */
export async function fuzzMain(argv: string[], out: (line: string) => void = (l) => console.log(l)): Promise<number> {
  let args: Args;
  let targets: FuzzTarget[];
  try {
    args = parseArgs(argv);
    targets = select(await projectTargets(args.seed), args.replay ? [args.replay.target] : args.targets);
  } catch (e) {
    if (e instanceof UsageError) {
      out(`fuzz: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (args.replay) {
    const watchdog = new Watchdog(30_000);
    const v = await runOne(targets[0]!, new Uint8Array(Buffer.from(args.replay.hex, 'hex')), 1000, watchdog);
    await watchdog.stop();
    out(v ? `fuzz: replay ${args.replay.target}: FAILS: ${v.problem}${v.stack ? `\n${v.stack}` : ''}` : `fuzz: replay ${args.replay.target}: ok`);
    return v ? 1 : 0;
  }
  out(`fuzz: seed ${args.seed}, ${args.seconds} s over ${targets.length} targets (${targets.map((t) => t.name).join(', ')})`);
  const report = await runFuzz(targets, {
    seconds: args.seconds,
    seed: args.seed,
    ...(args.maxInputs !== undefined ? { maxInputsPerTarget: args.maxInputs } : {}),
    log: (l) => (args.quiet && !l.includes('FAILURE') ? undefined : out(l)),
  });
  for (const f of report.failures) {
    out(`fuzz: failure in ${f.target}: ${f.problem}`);
    out(`  reproducer: node dist/fuzz/main.js --seed ${args.seed} --replay ${f.target} ${f.hex}`);
    if (f.stack) out(f.stack.split('\n').slice(0, 8).map((l) => `  ${l}`).join('\n'));
  }
  out(`fuzz: ${(report.durationMs / 1000).toFixed(1)} s; inputs per target: ${Object.entries(report.perTarget).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out(`fuzz: ${report.inputs} inputs, ${report.failures.length} failures`);
  return report.failures.length ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  fuzzMain(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(`fuzz: the fuzzer itself failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      process.exitCode = 2;
    },
  );
}
