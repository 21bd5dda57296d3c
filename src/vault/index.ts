export { type Envelope, openSecret, rewrapKey, sealSecret } from './envelope.js';
export { type KeyRing, keyRing, loadKeyRing, type MasterKey } from './keyring.js';
export { CREDENTIAL_ROUTES } from './routes.js';
export { type CredentialInfo, type CredentialStore, createCredentialStore, type NewCredential } from './store.js';
