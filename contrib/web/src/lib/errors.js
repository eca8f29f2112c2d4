// Words a person understands for what the server answers.

const GENERIC = {
  BAD_REQUEST: 'The server did not accept that request.',
  UNAUTHORIZED: 'Your session has ended. Please log in again.',
  FORBIDDEN: "You're not allowed to do that.",
  NOT_FOUND: 'That no longer exists.',
  CONFLICT: "That can't be done right now.",
  LIMIT_EXCEEDED: 'That goes past a limit of this server.',
  RATE_LIMITED: "You're going a bit fast. Wait a moment and try again.",
  UNAVAILABLE: 'The server is having trouble right now. Try again in a moment.',
  INTERNAL: 'Something went wrong on the server.',
  TIMEOUT: 'The server took too long to answer. Try again.',
  DISCONNECTED: 'The connection dropped before the server answered. Try again.',
  NETWORK: "Can't reach the server. Check your connection and try again.",
};

// By request type, then code.
const SPECIFIC = {
  INVITE_REQUEST: {
    NOT_FOUND: 'No one has that invite code. Check it and try again.',
    BAD_REQUEST: "That's your own invite code. Ask your friend for theirs.",
    CONFLICT: "You're already friends, or an invitation between you is waiting.",
    LIMIT_EXCEEDED: 'You have reached the maximum number of friends.',
  },
  ACCEPT_REQUEST: {
    NOT_FOUND: 'That invitation no longer exists.',
    CONFLICT: 'That invitation was already answered.',
    LIMIT_EXCEEDED: 'One of you has reached the maximum number of friends.',
  },
  REJECT_REQUEST: {
    NOT_FOUND: 'That invitation no longer exists.',
    CONFLICT: 'That invitation was already answered.',
  },
  DISCONNECT_REQUEST: {
    NOT_FOUND: "You're not connected with them.",
    CONFLICT: "You're not connected with them.",
    FORBIDDEN: 'Only the person who invited can withdraw this.',
  },
  CREATE_REQUEST: {
    NOT_FOUND: 'One of those people no longer exists.',
    FORBIDDEN: 'You can only start channels with your friends.',
    LIMIT_EXCEEDED: 'That is more members than a channel may have.',
    BAD_REQUEST: 'Give the channel a title of 1 to 100 characters and pick at least one friend.',
  },
  JOIN_REQUEST: {
    NOT_FOUND: 'No channel has that code. Check it and try again.',
    CONFLICT: "You're already in that channel.",
    LIMIT_EXCEEDED: 'That channel is full.',
  },
  ENTER_REQUEST: {
    NOT_FOUND: 'That channel no longer exists.',
    FORBIDDEN: "You're no longer a member of that channel.",
  },
  FETCH_CHANNEL_INVITECODE_REQUEST: {
    FORBIDDEN: "You're no longer a member of that channel.",
  },
  WRITE_MESSAGE: {
    FORBIDDEN: "You're no longer a member of this channel.",
    NOT_FOUND: 'This channel no longer exists.',
    LIMIT_EXCEEDED: 'That message is too long.',
    BAD_REQUEST: "That message can't be sent.",
    NOT_FOUND_REPLY: 'The message you replied to no longer exists.',
  },
  EDIT_MESSAGE: {
    FORBIDDEN: 'You can only edit your own messages, and only for a while after sending them.',
    CONFLICT: 'That message was deleted.',
    NOT_FOUND: 'That message no longer exists.',
    LIMIT_EXCEEDED: 'That message is too long.',
  },
  DELETE_MESSAGE: {
    FORBIDDEN: 'You can only delete your own messages.',
    NOT_FOUND: 'That message no longer exists.',
  },
  REACT_REQUEST: {
    CONFLICT: 'That message was deleted.',
    LIMIT_EXCEEDED: 'That message has as many different reactions as it can take.',
    NOT_FOUND: 'That message no longer exists.',
  },
  QUIT_REQUEST: {
    FORBIDDEN: "You're no longer a member of that channel.",
  },
};

export function describe(err, messageType) {
  const code = (err && err.code) || 'INTERNAL';
  const type = messageType || (err && err.messageType);
  const special = type && SPECIFIC[type] && SPECIFIC[type][code];
  let text = special || GENERIC[code] || GENERIC.INTERNAL;
  if (code === 'INTERNAL' && err && err.message) {
    const ref = /ref ([0-9a-f]+)/i.exec(err.message);
    if (ref) text += ` (reference ${ref[1]})`;
  }
  if (code === 'RATE_LIMITED' && type === 'WRITE_MESSAGE') {
    text = "You're sending messages too fast. Wait a moment.";
  }
  return text;
}

/** Words for an HTTP failure of the auth API. */
export function describeHttp(err, action) {
  const s = err.status;
  if (s === 0) return GENERIC.NETWORK;
  if (action === 'register') {
    if (s === 409) return 'That username is taken. Try another one.';
    if (s === 400)
      return 'Usernames are 3 to 32 letters, digits, dots, dashes or underscores; passwords at least 8 characters.';
  }
  if (action === 'login') {
    if (s === 401) return 'Wrong username or password.';
    if (s === 429) return 'Too many failed attempts. Wait a few minutes, then try again.';
    if (s === 400) return 'Enter your username and password.';
  }
  if (s === 401) return GENERIC.UNAUTHORIZED;
  if (s === 429) return GENERIC.RATE_LIMITED;
  if (s === 502 || s === 503 || s === 504) return GENERIC.UNAVAILABLE;
  if (s >= 500) return GENERIC.INTERNAL;
  return `The server answered ${s}${err.message ? ': ' + err.message : ''}.`;
}

export const USERNAME_RE = /^[A-Za-z0-9_.-]{3,32}$/;
