// @ts-check
/**
 * identity-axios: puts an IdentityClient (identity-client.js) behind an
 * existing axios instance, in place of the usual hand-written pair of
 * interceptors (a Bearer token from localStorage, and a 401 handler that
 * refreshes, queues the failed calls and replays them).
 *
 * ```js
 * const stop = useIdentity(api, client, { origins: ['https://api.example.com'] });
 * ```
 *
 * - Request: a call to one of `origins` waits for a fresh access token
 *   (`client.accessToken()`: the client's single-flight refresh, shared
 *   with `client.fetch` and with the other tabs) and goes with
 *   `Authorization: Bearer …`. Calls to any other origin get no token.
 * - Response: a `401 TOKEN_EXPIRED` (identity's error body: `{code, message,
 *   details: [ErrorInfo]}`) waits for one refresh, shared by every call that
 *   failed with the same token, and is replayed once through the instance
 *   (so its other interceptors run again); a replay that fails again is
 *   answered as it is: nothing loops.
 * - When the session is gone (the refresh answers REFRESH_TOKEN_INVALID or
 *   REFRESH_TOKEN_REUSED, or a call TOKEN_REVOKED) the client emits
 *   `signedout` once and the calls reject with an `IdentityError` of that
 *   reason (`cause`: the call's AxiosError); later calls reject at once with
 *   `SIGNED_OUT`, without a request. Every other failure is axios's own.
 *
 * axios is a peer dependency: this module imports nothing from it and works
 * with the instance it is given (axios 1.x).
 *
 * @module identity-axios
 */

import { IdentityError } from './identity-client.js';

/**
 * The part of an axios interceptor manager the adapter uses.
 * @typedef {object} InterceptorManager
 * @property {(onFulfilled?: ((value: any) => any) | null, onRejected?: ((error: any) => any) | null) => number} use
 * @property {(id: number) => void} eject
 */

/**
 * The part of an axios instance the adapter uses: any `AxiosInstance`
 * (axios.create(), or axios itself) fits.
 * @typedef {object} AxiosLike
 * @property {{request: InterceptorManager, response: InterceptorManager}} interceptors
 * @property {(config: any) => Promise<any>} request
 * @property {(config?: any) => string} [getUri]
 */

/**
 * @typedef {object} UseIdentityOptions
 * @property {string[]} [origins] the origins (or URLs, of which the origin
 *   counts; relative ones are this page's) whose calls get the access token.
 *   Default: the origin of the client's baseUrl (this page's when it is '').
 */

/**
 * The config key that marks a replayed call (a string key: axios keeps it
 * when it merges configs), so a call is replayed at most once.
 */
export const REPLAYED = 'identityReplayed';

/**
 * Installs a request and a response interceptor on `instance` that
 * authenticate its calls with `client`; returns a function that removes
 * them again.
 * @param {AxiosLike} instance an axios instance
 * @param {import('./identity-client.js').IdentityClient} client
 * @param {UseIdentityOptions} [options]
 * @returns {() => void}
 */
export function useIdentity(instance, client, options = {}) {
  if (!instance?.interceptors?.request || !instance.interceptors.response || typeof instance.request !== 'function') {
    throw new TypeError('useIdentity: want an axios instance (axios.create())');
  }
  const origins = new Set((options.origins ?? [client.baseUrl || pageOrigin()]).map((o) => {
    const origin = originOf(o);
    if (!origin) throw new TypeError(`useIdentity: origin ${JSON.stringify(o)} is not an absolute URL (and this is no page to resolve it against)`);
    return origin;
  }));

  /** @param {any} config */
  const ours = (config) => {
    let url = '';
    try {
      url = typeof instance.getUri === 'function' ? instance.getUri(config) : joinURL(config?.baseURL, config?.url);
    } catch {
      return false; // axios refuses the URL itself
    }
    const origin = originOf(url);
    return origin !== '' && origins.has(origin);
  };

  const requestId = instance.interceptors.request.use(async (config) => {
    if (!ours(config)) return config;
    setHeader(config, 'Authorization', `Bearer ${await client.accessToken()}`);
    return config;
  });

  const responseId = instance.interceptors.response.use(undefined, async (error) => {
    const config = error?.config;
    const res = error?.response;
    if (!config || !res || res.status !== 401 || !ours(config)) throw error;
    const sent = /^Bearer (.+)$/.exec(getHeader(config, 'Authorization'))?.[1];
    if (!sent) throw error;
    const answer = IdentityError.fromBody(401, await readBody(res.data), { cause: error });
    if (answer.reason === 'TOKEN_EXPIRED' && config[REPLAYED]) throw error; // replayed once already
    let token;
    try {
      token = await client.retryToken(sent, answer.reason);
    } catch (err) {
      // The refresh failed: the session is gone (or identity is unreachable).
      if (err instanceof IdentityError) throw new IdentityError(err.message, err.status, err.reason, { cause: error });
      throw err;
    }
    if (token) return instance.request({ ...config, [REPLAYED]: true });
    if (answer.reason === 'TOKEN_REVOKED') throw answer;
    throw error;
  });

  return () => {
    instance.interceptors.request.eject(requestId);
    instance.interceptors.response.eject(responseId);
  };
}

/** @returns {string} */
function pageOrigin() {
  return globalThis.location?.origin ?? '';
}

/**
 * The origin of an absolute URL, or of a relative one on this page; ''
 * when there is none.
 * @param {string} url
 * @returns {string}
 */
function originOf(url) {
  try {
    const u = new URL(url, globalThis.location?.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : '';
  } catch {
    return '';
  }
}

/**
 * baseURL + url as axios joins them, for an instance without getUri.
 * @param {unknown} base
 * @param {unknown} url
 */
function joinURL(base, url) {
  const u = typeof url === 'string' ? url : '';
  if (typeof base !== 'string' || !base || /^([a-z][a-z\d+\-.]*:)?\/\//i.test(u)) return u;
  return u ? `${base.replace(/\/+$/, '')}/${u.replace(/^\/+/, '')}` : base;
}

/**
 * @param {any} config
 * @param {string} name
 * @param {string} value
 */
function setHeader(config, name, value) {
  const headers = config.headers;
  if (typeof headers?.set === 'function') {
    headers.set(name, value); // AxiosHeaders (axios 1.x)
    return;
  }
  const plain = { ...(headers ?? {}) };
  for (const k of Object.keys(plain)) if (k.toLowerCase() === name.toLowerCase()) delete plain[k];
  plain[name] = value;
  config.headers = plain;
}

/**
 * @param {any} config
 * @param {string} name
 * @returns {string}
 */
function getHeader(config, name) {
  const headers = config.headers;
  if (!headers) return '';
  if (typeof headers.get === 'function') return String(headers.get(name) ?? '');
  for (const k of Object.keys(headers)) if (k.toLowerCase() === name.toLowerCase()) return String(headers[k] ?? '');
  return '';
}

/**
 * An error body as axios hands it over: parsed JSON by default, or text,
 * bytes or a Blob with another responseType.
 * @param {unknown} data
 * @returns {Promise<unknown>}
 */
async function readBody(data) {
  try {
    if (typeof Blob !== 'undefined' && data instanceof Blob) data = await data.text();
    else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) data = new TextDecoder().decode(/** @type {ArrayBuffer} */ (data));
    return typeof data === 'string' ? JSON.parse(data) : data;
  } catch {
    return null;
  }
}
