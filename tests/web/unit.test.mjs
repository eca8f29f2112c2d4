// The web client's pure parts, without a browser: backoff, names, words for errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, ProtocolError } from '../../contrib/web/src/lib/socket.js';
import { describe, describeHttp, USERNAME_RE } from '../../contrib/web/src/lib/errors.js';
import { directTitle, peerOf, utf8Length, dayLabel, lastSeenText } from '../../contrib/web/src/lib/util.js';

test('backoff doubles from 0.25-0.5 s up to 5-10 s, at random in the upper half', () => {
  assert.equal(backoffDelay(0, () => 0), 250);
  assert.equal(backoffDelay(0, () => 1), 500);
  assert.equal(backoffDelay(1, () => 0), 500);
  assert.equal(backoffDelay(3, () => 1), 4000);
  assert.equal(backoffDelay(30, () => 0), 5000);
  assert.equal(backoffDelay(30, () => 1), 10000);
  const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(4)));
  assert.ok(seen.size > 10, 'jitter spreads the retries');
});

test('an unknown message type is told apart from other bad requests', () => {
  assert.equal(new ProtocolError('BAD_REQUEST', 'unknown message type', 'SYNC_REQUEST').unsupported, true);
  assert.equal(new ProtocolError('BAD_REQUEST', 'channelId must be a positive integer').unsupported, false);
  assert.equal(new ProtocolError('NOT_FOUND', 'unknown message type').unsupported, false);
});

test('direct channels are named after the other person', () => {
  assert.equal(directTitle('bob', 'alice'), 'alice & bob');
  assert.equal(peerOf({ title: 'alice & bob', headCount: 2 }, 'alice'), 'bob');
  assert.equal(peerOf({ title: 'alice & bob', headCount: 2 }, 'BOB'), 'alice');
  assert.equal(peerOf({ title: 'alice & bob', headCount: 3 }, 'alice'), null);
  assert.equal(peerOf({ title: 'Weekend plans', headCount: 2 }, 'alice'), null);
});

test('errors are told in words', () => {
  assert.match(describeHttp({ status: 409 }, 'register'), /username is taken/);
  assert.match(describeHttp({ status: 401 }, 'login'), /Wrong username or password/);
  assert.match(describeHttp({ status: 429 }, 'login'), /Too many failed attempts/);
  assert.match(describeHttp({ status: 0 }, 'login'), /Can't reach the server/);
  assert.match(describe({ code: 'NOT_FOUND' }, 'INVITE_REQUEST'), /No one has that invite code/);
  assert.match(describe({ code: 'CONFLICT' }, 'JOIN_REQUEST'), /already in that channel/);
  assert.match(describe({ code: 'INTERNAL', message: 'internal error (ref 1a2b3c4d)' }), /reference 1a2b3c4d/);
  assert.match(describe({ code: 'SOMETHING_NEW' }), /went wrong/);
});

test('usernames, lengths and times', () => {
  assert.ok(USERNAME_RE.test('alice.b-c_1'));
  assert.ok(!USERNAME_RE.test('al'));
  assert.ok(!USERNAME_RE.test('alice smith'));
  assert.equal(utf8Length('héllo 👋'), 11);
  const now = Date.parse('2026-06-10T12:00:00');
  assert.equal(dayLabel(now - 3600e3, now), 'Today');
  assert.equal(dayLabel(now - 86400e3, now), 'Yesterday');
  assert.equal(lastSeenText(now - 5 * 60e3, now), 'last seen 5 min ago');
});
