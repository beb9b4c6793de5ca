// Unit tests of what the demo page says (demo/format.js): devices from
// User-Agent strings, relative times, and error reasons as sentences.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { IdentityError } from '../../identity-client.js';
import { MAX_RAW_DEVICE, asSentence, describeDevice, errorSentence, exactTime, relativeTime, signedOutSentence } from '../../demo/format.js';

describe('describeDevice', () => {
  const cases = [
    ['Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', 'Firefox on Linux'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', 'Chrome on Windows'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0', 'Edge on Windows'],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15', 'Safari on macOS'],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1', 'Safari on iPhone'],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1', 'Chrome on iPhone'],
    ['Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/131.0 Mobile/15E148 Safari/605.1.15', 'Firefox on iPad'],
    ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36', 'Chrome on Android'],
    ['Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36', 'Samsung Internet on Android'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/114.0.0.0', 'Opera on Windows'],
    ['Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', 'Chrome on ChromeOS'],
    ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0.0.0 Safari/537.36', 'Headless Chrome on Linux'],
    ['Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko', 'Internet Explorer on Windows'],
    ['Mozilla/5.0 Firefox/128.0', 'Firefox'],
    ['curl/8.5.0', 'curl/8.5.0'],
    ['grpc-go/1.70.0', 'grpc-go/1.70.0'],
    ['', 'Unknown device'],
    [null, 'Unknown device'],
    ['   ', 'Unknown device'],
  ];
  for (const [ua, want] of cases) {
    test(`${JSON.stringify(ua).slice(0, 60)} → ${want}`, () => assert.equal(describeDevice(ua), want));
  }

  test('a User-Agent cut at 128 bytes, as identity stores it, still names its device', () => {
    const iphone = 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1';
    assert.ok(iphone.length > 128);
    assert.equal(describeDevice(iphone.slice(0, 128)), 'Safari on iPhone');
    assert.equal(describeDevice(iphone.slice(0, 110)), 'Safari on iPhone');
  });

  test('a User-Agent naming no browser is shown raw, shortened', () => {
    const ua = 'MyCompanyApp/3.2.1 (build 4711; okhttp/4.12.0; Linux; Android 14; Pixel 8 Pro)';
    const got = describeDevice(ua);
    assert.equal(Array.from(got).length, MAX_RAW_DEVICE);
    assert.ok(got.endsWith('…'));
    assert.ok(ua.startsWith(got.slice(0, -1)));
    assert.equal(describeDevice('python-requests/2.32\n\tx'), 'python-requests/2.32 x');
  });
});

describe('relativeTime', () => {
  const now = Date.parse('2026-12-03T06:45:41Z');
  const cases = [
    [0, 'just now'],
    [-9_000, 'just now'],
    [5_000, 'in a few seconds'],
    [-42_000, '42 seconds ago'],
    [-60_000, '1 minute ago'],
    [-170_000, '2 minutes ago'],
    [-3 * 3600e3 - 5, '3 hours ago'],
    [-26 * 3600e3, 'yesterday'],
    [-3 * 24 * 3600e3, '3 days ago'],
    [-15 * 24 * 3600e3, '2 weeks ago'],
    [30 * 24 * 3600e3, 'next month'],
    [29 * 24 * 3600e3, 'in 4 weeks'],
    [400 * 24 * 3600e3, 'next year'],
  ];
  for (const [diff, want] of cases) {
    test(`${diff} ms → ${want}`, () => assert.equal(relativeTime(now + diff, now), want));
  }
  test('an unreadable time says so', () => {
    assert.equal(relativeTime(Date.parse('nope'), now), 'at an unknown time');
    assert.equal(exactTime(NaN), 'unknown');
    assert.match(exactTime(now), /2026/);
  });
});

describe('errorSentence', () => {
  const err = (reason, message = 'x', status = 400, retryAfter = 0) => new IdentityError(message, status, reason, { retryAfter });

  test('the reasons of the password form', () => {
    assert.equal(errorSentence(err('INVALID_CREDENTIALS', 'invalid username or password', 401), 'password'), 'The current password is wrong.');
    assert.equal(errorSentence(err('INVALID_CREDENTIALS', 'invalid username or password', 401), 'login'), 'The username or password is wrong.');
    assert.equal(errorSentence(err('PASSWORD_TOO_WEAK', 'a password needs at least 12 characters'), 'password'), 'A password needs at least 12 characters.');
    assert.equal(errorSentence(err('PASSWORD_TOO_WEAK', ''), 'password'), 'The new password is too weak.');
    assert.equal(errorSentence(err('INVALID_REQUEST', 'new_password is too long'), 'password'), 'The new password is too long.');
    assert.equal(errorSentence(err('INVALID_REQUEST', 'current_password is required'), 'password'), 'The current password is required.');
    assert.equal(errorSentence(err('INVALID_REQUEST', 'invalid password: 1 to 1024 bytes'), 'password'), 'Invalid password: 1 to 1024 bytes.');
    assert.equal(errorSentence(err('RATE_LIMITED', 'too many login attempts', 429, 7), 'password'), 'Too many attempts: try again in 7 s.');
    assert.equal(errorSentence(err('RATE_LIMITED', 'too many logins in progress', 429), 'login'), 'Too many attempts: try again shortly.');
    assert.equal(errorSentence(err('STORE_UNAVAILABLE', 'the session store is unavailable', 503), 'password'), 'The service is unavailable, try again shortly.');
    assert.equal(errorSentence(err('IDENTITY_UNAVAILABLE', 'shutting down', 503), 'sessions'), 'The service is unavailable, try again shortly.');
  });

  test('sessions, and a session that has ended', () => {
    assert.equal(errorSentence(err('NOT_FOUND', 'no such session of yours', 404), 'revoke'), 'That device was already signed out.');
    for (const r of ['TOKEN_REVOKED', 'REFRESH_TOKEN_INVALID', 'REFRESH_TOKEN_REUSED', 'SIGNED_OUT', 'TOKEN_INVALID']) {
      assert.equal(errorSentence(err(r, 'access token revoked', 401), 'sessions'), 'This device is no longer signed in: sign in again.', r);
    }
    assert.equal(errorSentence(err('CSRF_REJECTED', 'origin not allowed', 403), 'login'), 'The service refused a request from this page: its origin is not allowed.');
    assert.equal(errorSentence(err('INTERNAL', 'internal error', 500), 'call'), 'The service failed unexpectedly, try again.');
  });

  test('never a bare code: unknown reasons, other servers, fetch failures', () => {
    assert.equal(errorSentence(err('SOMETHING_NEW', 'the frobnicator is off'), 'call'), 'The frobnicator is off.');
    assert.equal(errorSentence(err('SOMETHING_NEW', ''), 'call'), 'The service refused the request.');
    assert.equal(errorSentence(err('', 'HTTP 502', 502), 'call'), 'The service answered with an error (HTTP 502).');
    assert.equal(errorSentence(new TypeError('Failed to fetch'), 'login'), 'The service cannot be reached: check the connection and try again.');
    assert.equal(errorSentence(new DOMException('signal timed out', 'TimeoutError'), 'login'), 'The service did not answer in time, try again.');
    assert.equal(errorSentence(new Error('boom'), 'call'), 'Boom.');
    assert.equal(errorSentence('weird', 'call'), 'Something went wrong, try again.');
    for (const s of [errorSentence(err('RATE_LIMITED', '', 429, 3), 'login'), errorSentence(err('NOT_FOUND'), 'sessions')]) {
      assert.doesNotMatch(s, /[A-Z]{2,}_[A-Z]/, 'no reason code in the sentence');
    }
  });
});

describe('asSentence and signedOutSentence', () => {
  test('asSentence', () => {
    assert.equal(asSentence(''), '');
    assert.equal(asSentence('session_id is required'), 'The session id is required.');
    assert.equal(asSentence('Already a sentence.'), 'Already a sentence.');
  });
  test('signedOutSentence', () => {
    assert.equal(signedOutSentence('NO_SESSION', false), '');
    assert.equal(signedOutSentence('logout', false), 'You signed out.');
    assert.equal(signedOutSentence('logout', true), 'You signed out in another tab.');
    assert.match(signedOutSentence('TOKEN_REVOKED', false), /^This device was signed out: its session was ended/);
    assert.match(signedOutSentence('REFRESH_TOKEN_REUSED', true), /theft/);
    assert.equal(signedOutSentence('whatever', false), 'This device was signed out.');
  });
});
