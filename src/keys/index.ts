export { KEY_ROUTES } from './routes.js';
export { createKeyStore, JWT_ALG, type KeyStore, type SigningKey } from './store.js';
export { localKeySet } from './key-set.js';
export { issuedInFuture, MAX_CLOCK_SKEW_S } from './claims.js';
