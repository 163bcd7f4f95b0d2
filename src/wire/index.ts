export * from './alert.js';
export * from './reader.js';
export * from './writer.js';
export * from './bytes.js';
