export { KEY_ROUTES } from './routes.js';
export { createKeyStore, JWT_ALG, type KeyStore, type PublishedKey, type SigningKey } from './store.js';
export { KEYS_CHANNEL } from './generation.js';
export { localKeySet } from './key-set.js';
export { issuedInFuture, MAX_CLOCK_SKEW_S } from './claims.js';
