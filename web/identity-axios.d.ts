/**
 * Installs a request and a response interceptor on `instance` that
 * authenticate its calls with `client`; returns a function that removes
 * them again.
 * @param {AxiosLike} instance an axios instance
 * @param {import('./identity-client.js').IdentityClient} client
 * @param {UseIdentityOptions} [options]
 * @returns {() => void}
 */
export function useIdentity(instance: AxiosLike, client: import("./identity-client.js").IdentityClient, options?: UseIdentityOptions): () => void;
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
export const REPLAYED: "identityReplayed";
/**
 * The part of an axios interceptor manager the adapter uses.
 */
export type InterceptorManager = {
    use: (onFulfilled?: ((value: any) => any) | null, onRejected?: ((error: any) => any) | null) => number;
    eject: (id: number) => void;
};
/**
 * The part of an axios instance the adapter uses: any `AxiosInstance`
 * (axios.create(), or axios itself) fits.
 */
export type AxiosLike = {
    interceptors: {
        request: InterceptorManager;
        response: InterceptorManager;
    };
    request: (config: any) => Promise<any>;
    getUri?: ((config?: any) => string) | undefined;
};
export type UseIdentityOptions = {
    /**
     * the origins (or URLs, of which the origin
     * counts; relative ones are this page's) whose calls get the access token.
     * Default: the origin of the client's baseUrl (this page's when it is '').
     */
    origins?: string[] | undefined;
};
