/**
 * JS heap allocated by a piece of code, counted with V8's sampling heap
 * profiler through `node:inspector` (objects later collected by a minor or
 * major GC included): a load-independent count the allocation tests bound.
 */
import { Session } from 'node:inspector';

/** A node of V8's sampling heap profile. */
export interface ProfileNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: ProfileNode[];
}

/** The call frame of a profile node. */
export type CallFrame = ProfileNode['callFrame'];

function post<T>(s: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => s.post(method, params ?? {}, (e, r) => (e ? reject(e) : resolve(r as T))));
}

/**
 * Runs `body` under the sampling heap profiler (one sample per `interval`
 * bytes on average) and returns the profile's root; with `dump`, the profile
 * is also written to that file (to read it in DevTools).
 */
export async function sampleHeap(body: () => Promise<void> | void, interval: number, dump?: string): Promise<ProfileNode> {
  const s = new Session();
  s.connect();
  try {
    await post(s, 'HeapProfiler.enable');
    await post(s, 'HeapProfiler.startSampling', {
      samplingInterval: interval,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await body();
    const { profile } = await post<{ profile: { head: ProfileNode } }>(s, 'HeapProfiler.stopSampling');
    if (dump) (await import('node:fs')).writeFileSync(dump, JSON.stringify(profile));
    return profile.head;
  } finally {
    s.disconnect();
  }
}

/** Every byte sampled in the profile. */
export function totalBytes(root: ProfileNode): number {
  let total = 0;
  const walk = (n: ProfileNode): void => {
    total += n.selfSize;
    n.children.forEach(walk);
  };
  walk(root);
  return total;
}

/**
 * Bytes sampled under a frame `enter` accepts and not under a later frame
 * `leave` accepts (by default test code: a callback from the code under
 * test back into the test is not counted).
 */
export function bytesUnder(root: ProfileNode, enter: (f: CallFrame) => boolean, leave: (f: CallFrame) => boolean = (f) => f.url.includes('/test/')): number {
  let total = 0;
  const walk = (n: ProfileNode, inside: boolean): void => {
    let here = inside;
    if (enter(n.callFrame)) here = true;
    else if (leave(n.callFrame)) here = false;
    if (here) total += n.selfSize;
    for (const c of n.children) walk(c, here);
  };
  walk(root, false);
  return total;
}

/** Bytes sampled under a frame of the source file ending with `suffix` (e.g. `/src/front/first-flight.ts`), not under a later frame of test code. */
export function bytesUnderFile(root: ProfileNode, suffix: string): number {
  return bytesUnder(root, (f) => f.url.endsWith(suffix));
}

/**
 * An allocation bound by Node version. `node20` was measured on Node 20,
 * the oldest Node the package supports, where each bound was also checked
 * to fail on the code before the change it guards; later Node versions
 * (another V8, node:crypto objects that allocate more) get `later`, the new
 * code's measurement there plus ~8 %: it catches a gross regression, not
 * necessarily the old code.
 */
export function byNode(node20: number, later: number): number {
  return Number(process.versions.node.split('.')[0]) <= 20 ? node20 : later;
}
