// src/api.js: the app's one axios instance, its calls authenticated by identity.
import axios from 'axios';
import { IdentityClient } from '@identityd/web/identity-client.js';
import { useIdentity } from '@identityd/web/identity-axios.js';

/**
 * @param {object} config
 * @param {string} config.identityUrl identity's REST API, e.g. 'https://id.example.com'
 * @param {string} config.apiUrl your backend, e.g. 'https://api.example.com'
 * @param {(reason: string) => void} config.onSignedOut e.g. show the login page
 */
export function createApi({ identityUrl, apiUrl, onSignedOut }) {
  // Cookie mode: identity keeps the refresh token in an HttpOnly cookie;
  // the access token lives in this object's memory, never in localStorage.
  const identity = new IdentityClient({ baseUrl: identityUrl });
  identity.addEventListener('signedout', (ev) => {
    onSignedOut(/** @type {CustomEvent<{reason: string}>} */ (ev).detail.reason);
  });
  const api = axios.create({ baseURL: apiUrl });
  // Bearer token on calls to these origins only; refresh, queue and replay built in.
  useIdentity(api, identity, { origins: [apiUrl, identityUrl] });
  return { identity, api };
}
