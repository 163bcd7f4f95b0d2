/**
 * Fleet mode (docs/fleet.md): several front ends share ECH keys and
 * session-ticket keys through etcd, sealed with a key-encryption key; one
 * elected leader rotates and publishes.
 *
 * @module ech-server/fleet
 */
export { FleetMember, type FleetMemberOptions, type FleetMemberEvents, type FleetHealth, type FleetRotation } from './fleet/member.js';
export { validateFleetSection, FleetConfigError, type FleetConfig, type FleetEtcdConfig } from './fleet/config.js';
export { FleetKekError, readKekFile, writeNewKekFile, seal, openSealed, type FleetKek } from './fleet/kek.js';
export { fleetStatus, type FleetStatus } from './fleet/status.js';
