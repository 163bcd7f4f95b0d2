/**
 * `ech-server fleet status`: what etcd says about a fleet, read without
 * joining it.
 *
 * @module
 */
import type { FleetConfig } from './config.js';
import { type FleetMemberRecord, etcdClient, etcdMessage, fleetPaths, parseFleetState } from './store.js';
import { EchError } from '../wire/alert.js';

/**
 * One JSON object: the leader, the live members and the key ids each has
 * loaded, the ECHConfigList last published (base64) and when the next key
 * is due.
 * @group Fleet
 * @example
 * ```ts
 * const s = await fleetStatus(config.fleet);
 * console.log(s.leader, s.members.map((m) => m.name));
 * ```
 */
export interface FleetStatus {
  leader: string | null;
  members: { name: string; keyIds: string[]; ticketIds: string[] }[];
  published: string | null;
  /** ISO time the next key is due, or null without rotation. */
  nextRotation: string | null;
  /** Every key in the rotation state and its phase. */
  keys: { id: string; configId: number; phase: 'pending' | 'active' | 'withdrawn' }[];
  /** Members the pending key still waits for. */
  waitingFor: string[];
  publishCount: number;
}

/**
 * Read a fleet's status from etcd.
 * @group Fleet
 * @example
 * ```ts
 * process.stdout.write(JSON.stringify(await fleetStatus(config.fleet)));
 * ```
 */
export async function fleetStatus(config: FleetConfig): Promise<FleetStatus> {
  const client = await etcdClient(config.etcd);
  const p = fleetPaths(config.prefix);
  try {
    const [stateText, members, leader] = await Promise.all([
      client.get(p.state).string(),
      client.getAll().prefix(p.members).strings(),
      client.namespace(p.election).election('leader').leader(),
    ]);
    const state = parseFleetState(stateText);
    return {
      leader: leader ?? null,
      members: Object.values(members)
        .map((v) => JSON.parse(v) as FleetMemberRecord)
        .map((m) => ({ name: m.name, keyIds: m.keyIds, ticketIds: m.ticketIds }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      published: state.lastPublished?.echConfigList ?? null,
      nextRotation: state.nextRotation === null ? null : new Date(state.nextRotation).toISOString(),
      keys: state.keys.map((k) => ({ id: k.id, configId: k.configId, phase: k.withdrawn !== null ? 'withdrawn' : k.published !== null ? 'active' : 'pending' })),
      waitingFor: state.waitingFor,
      publishCount: state.publishCount,
    };
  } catch (e) {
    if (e instanceof EchError) throw e;
    throw new EchError('ERR_FLEET_UNAVAILABLE', 'internal_error', `etcd at ${config.etcd.endpoints.join(', ')}: ${etcdMessage(e)}`, { cause: e });
  } finally {
    client.close();
  }
}
