// @ts-check
// What the demo page says, in words: devices from User-Agent strings, times
// relative to now, and identity's error reasons as sentences. No DOM here,
// so the unit tests (test/unit/demo-format.test.js) run it under Node.

/**
 * The browser of a User-Agent string, or '' when it names none we know.
 * Order matters: Edge, Opera and Samsung Internet also say "Chrome", and
 * Chrome also says "Safari".
 * @type {Array<[RegExp, string]>}
 */
const BROWSERS = [
  [/\bEdg(?:e|A|iOS)?\/\d/, 'Edge'],
  [/\bOPR\/\d|\bOpera\b/, 'Opera'],
  [/\bSamsungBrowser\/\d/, 'Samsung Internet'],
  [/\bFirefox\/\d|\bFxiOS\/\d/, 'Firefox'],
  [/\bHeadlessChrome\/\d/, 'Headless Chrome'],
  [/\bChromium\/\d/, 'Chromium'],
  [/\bChrome\/\d|\bCriOS\/\d/, 'Chrome'],
  // identity keeps at most 128 bytes of a User-Agent, which can cut an
  // iPhone's before its "Safari/…": Safari is WebKit with a Version/.
  [/\bAppleWebKit\/\d.*\bVersion\/\d/, 'Safari'],
  [/\bMSIE \d|\bTrident\/\d/, 'Internet Explorer'],
];

/** @type {Array<[RegExp, string]>} Android and ChromeOS before Linux, iOS before macOS. */
const SYSTEMS = [
  [/\biPhone\b/, 'iPhone'],
  [/\biPad\b/, 'iPad'],
  [/\bAndroid\b/, 'Android'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bWindows\b/, 'Windows'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\bLinux\b|\bX11\b/, 'Linux'],
];

/** Longest device text shown as it is (a User-Agent we cannot read). */
export const MAX_RAW_DEVICE = 40;

/**
 * A device in words from a User-Agent string: "Firefox on Linux",
 * "Safari on iPhone", "Chrome"; a string naming no browser we know (curl,
 * a gRPC client, an app) is shown as it is, shortened; none at all is
 * "Unknown device".
 * @param {string | null | undefined} userAgent
 * @returns {string}
 */
export function describeDevice(userAgent) {
  const ua = (userAgent ?? '').trim();
  if (!ua) return 'Unknown device';
  const browser = BROWSERS.find(([re]) => re.test(ua))?.[1] ?? '';
  if (!browser) return shorten(ua, MAX_RAW_DEVICE);
  const system = SYSTEMS.find(([re]) => re.test(ua))?.[1] ?? '';
  return system ? `${browser} on ${system}` : browser;
}

/**
 * @param {string} s
 * @param {number} max
 * @returns {string}
 */
export function shorten(s, max) {
  const chars = Array.from(s.replace(/\s+/g, ' '));
  return chars.length <= max ? chars.join('') : `${chars.slice(0, max - 1).join('').trimEnd()}…`;
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

/** @type {Array<[Intl.RelativeTimeFormatUnit, number]>} each unit and its length in ms */
const UNITS = [
  ['year', 365 * 24 * 3600e3],
  ['month', 30 * 24 * 3600e3],
  ['week', 7 * 24 * 3600e3],
  ['day', 24 * 3600e3],
  ['hour', 3600e3],
  ['minute', 60e3],
  ['second', 1e3],
];

/**
 * A time relative to now in words: "just now", "5 minutes ago",
 * "yesterday", "in 30 days". Counts whole units (2 min 50 s ago is
 * "2 minutes ago").
 * @param {number} at ms since the epoch
 * @param {number} now ms since the epoch
 * @returns {string}
 */
export function relativeTime(at, now) {
  if (!Number.isFinite(at)) return 'at an unknown time';
  const diff = at - now;
  if (Math.abs(diff) < 10e3) return diff <= 0 ? 'just now' : 'in a few seconds';
  for (const [unit, ms] of UNITS) {
    if (Math.abs(diff) >= ms || unit === 'second') {
      return relative.format(Math.trunc(diff / ms), unit);
    }
  }
  return '';
}

const exact = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'long' });

/**
 * The exact time, in the reader's locale and time zone (for a title).
 * @param {number} at ms since the epoch
 * @returns {string}
 */
export function exactTime(at) {
  return Number.isFinite(at) ? exact.format(at) : 'unknown';
}

/**
 * Field names in identity's messages, in words.
 * @type {Record<string, string>}
 */
const FIELDS = {
  current_password: 'current password',
  new_password: 'new password',
  session_id: 'session id',
  username: 'username',
  password: 'password',
};

/**
 * A server message as a sentence: field names in words ("new_password is
 * too long" → "The new password is too long."), a capital, a full stop.
 * @param {string} message
 * @returns {string}
 */
export function asSentence(message) {
  let s = message.trim();
  if (!s) return '';
  const field = /^([a-z_]+)\b/.exec(s)?.[1] ?? '';
  if (Object.hasOwn(FIELDS, field)) s = `the ${FIELDS[field]}${s.slice(field.length)}`;
  s = s.replace(/\b[a-z]+(?:_[a-z]+)+\b/g, (f) => (Object.hasOwn(FIELDS, f) ? FIELDS[f] : f));
  s = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?…]$/.test(s) ? s : `${s}.`;
}

/**
 * What a failed action was, for the sentence that says so.
 * @typedef {'login' | 'password' | 'sessions' | 'revoke' | 'call'} Action
 */

/**
 * The reasons after which this device has no session any more.
 */
const ENDED = new Set(['TOKEN_REVOKED', 'TOKEN_INVALID', 'TOKEN_EXPIRED', 'REFRESH_TOKEN_INVALID', 'REFRESH_TOKEN_REUSED', 'SIGNED_OUT']);

/**
 * A failure as a sentence for the person at the page: never a bare code.
 * Reads identity's reason (IdentityError's `reason`, `message`, `status`,
 * `retryAfter`), or what fetch itself threw (no connection, a timeout).
 * @param {unknown} err
 * @param {Action} action
 * @returns {string}
 */
export function errorSentence(err, action) {
  const e = /** @type {{name?: unknown, message?: unknown, reason?: unknown, status?: unknown, retryAfter?: unknown}} */ (
    err && typeof err === 'object' ? err : {});
  const message = typeof e.message === 'string' ? e.message : '';
  if (e.name === 'TimeoutError') return 'The service did not answer in time, try again.';
  if (e.name === 'AbortError') return 'The request was cancelled.';
  if (e.name === 'TypeError') return 'The service cannot be reached: check the connection and try again.';
  if (e.name !== 'IdentityError') return asSentence(message) || 'Something went wrong, try again.';
  const reason = typeof e.reason === 'string' ? e.reason : '';
  const status = typeof e.status === 'number' ? e.status : 0;
  const wait = typeof e.retryAfter === 'number' && e.retryAfter > 0 ? Math.ceil(e.retryAfter) : 0;
  switch (reason) {
    case 'INVALID_CREDENTIALS':
      return action === 'password' ? 'The current password is wrong.' : 'The username or password is wrong.';
    case 'PASSWORD_TOO_WEAK':
      // The policy's message says why: keep it, as a sentence.
      return asSentence(message) || 'The new password is too weak.';
    case 'INVALID_REQUEST':
      return asSentence(message) || 'The request was not valid.';
    case 'RATE_LIMITED':
      return wait ? `Too many attempts: try again in ${wait} s.` : 'Too many attempts: try again shortly.';
    case 'STORE_UNAVAILABLE':
    case 'IDENTITY_UNAVAILABLE':
      return 'The service is unavailable, try again shortly.';
    case 'NOT_FOUND':
      return action === 'revoke' ? 'That device was already signed out.' : 'Not found: it may have ended already.';
    case 'CSRF_REJECTED':
      return 'The service refused a request from this page: its origin is not allowed.';
    case 'PERMISSION_DENIED':
      return 'This account is not allowed to do that.';
    case 'INTERNAL':
      return 'The service failed unexpectedly, try again.';
    default:
      if (ENDED.has(reason)) return 'This device is no longer signed in: sign in again.';
      if (reason) return asSentence(message) || 'The service refused the request.';
      return status ? `The service answered with an error (HTTP ${status}).` : 'The service cannot be reached, try again.';
  }
}

/**
 * Why the page signed out, in words ('' when there is nothing to say: a
 * page load that found no session).
 * @param {string} reason the `signedout` event's reason
 * @param {boolean} fromOtherTab
 * @returns {string}
 */
export function signedOutSentence(reason, fromOtherTab) {
  switch (reason) {
    case 'NO_SESSION':
      return '';
    case 'logout':
      return fromOtherTab ? 'You signed out in another tab.' : 'You signed out.';
    case 'REFRESH_TOKEN_REUSED':
      return 'This device was signed out: its refresh token was used twice, which looks like theft, so the session was ended.';
    case 'TOKEN_REVOKED':
    case 'REFRESH_TOKEN_INVALID':
      return 'This device was signed out: its session was ended from another device, by a password change, or it expired.';
    default:
      return 'This device was signed out.';
  }
}
