/**
 * The front end (docs/front-end.md): `EchFrontEnd`, reading the first
 * flight, routing by inner server name, passthrough and PROXY v2, the
 * ech-status page, metrics, JSON-lines logs, and `serve` with its
 * configuration file.
 *
 * @module ech-server/front
 */
export * from './front/front-end.js';
export * from './front/config.js';
export * from './front/serve.js';
export * from './front/routes.js';
export * from './front/passthrough.js';
export * from './front/pool.js';
export * from './front/first-flight.js';
export * from './front/proxy-protocol.js';
export * from './front/metrics.js';
export * from './front/log.js';
export * from './front/admin.js';
export * from './front/ech-status.js';
export * from './front/alerts.js';
export * from './front/tls12.js';
