// The event catalogue's door: envelope, event types, validators, upcasters and the record codec.

export * from './catalogue.js';
export * from './codec.js';
export * from './envelope.js';
export * from './registry.js';
