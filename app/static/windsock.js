// Windsock browser client: one API over WebSocket or Server-Sent Events.
// No dependencies, no build step. Usage: README.md, "The dashboard and the browser client".
//
//   const ws = new Windsock({url: location.origin, transport: "sse", channels: ["demo"], since: 0});
//   since: 0 (the whole history), an id, "latest" (each channel's newest message, then live), a map
//   {channel: id | "latest"}, or left out (live only).
//   ws.on("message", (m) => console.log(m.channel, m.id, m.data));
//   ws.on("status", (s) => console.log(s.status, s.retryIn));
//
// Events: "message" {channel, id, data}; "status" {status, transport, retryIn, attempt}
// with status connecting | live | reconnecting | closed; "reset" {channel, id, reason}
// (messages were lost from history); "error" {code, message} (an error frame).
//
// The client remembers the last id it delivered on each channel. After a
// reconnect it resumes from there (WebSocket: subscribe with "since"; SSE:
// ?last_event_id=<cursor>), and it drops any message whose id is not above
// the last one delivered, so nothing is lost or shown twice.
//
// A channel started at "latest" asks for it only until the client has a
// position on it (WebSocket: the "subscribed" answer; SSE: its newest
// message, read with GET /api/channels/NAME before the stream opens, since
// a resume cursor cannot say "latest"). Every reconnect after that resumes
// from the last id, as for any channel, so it never skips a message.

const PUBLISH_TIMEOUT_MS = 10000;

export class Windsock {
  constructor(options = {}) {
    this.url = String(options.url || location.origin).replace(/\/+$/, "");
    this.transport = options.transport === "sse" ? "sse" : "websocket";
    this.heartbeat = (options.heartbeat ?? 15) * 1000; // the server's HEARTBEAT_INTERVAL
    this.minDelay = (options.minDelay ?? 0.5) * 1000;
    this.maxDelay = (options.maxDelay ?? 30) * 1000;
    // A subscribe token (SUBSCRIBE_SECRET): a string, or a function called on
    // every (re)connect, so a page can hand over a fresh one before expiry.
    this.token = options.token;
    this.status = "connecting";
    this.attempt = 0;
    this.retryAt = 0;
    this._handlers = new Map();
    this._channels = new Set();
    this._positions = new Map(); // channel -> last id delivered (0: from the start of history)
    this._latest = new Set(); // channels to start at their newest message, with no position yet
    this._latestAt = new Map(); // WebSocket: channel -> id of the newest message about to be replayed
    this._awaiting = new Set(); // WebSocket: channels whose "subscribed" has not arrived
    this._pending = new Map(); // WebSocket: publish ref -> {resolve, reject, timer}
    this._ref = 0;
    const since = options.since;
    for (const channel of options.channels || []) {
      this._channels.add(channel);
      const pos = since !== null && typeof since === "object" ? since[channel] : since;
      if (Number.isSafeInteger(pos) && pos >= 0) this._positions.set(channel, pos);
      else if (pos === "latest") this._latest.add(channel);
    }
    this._online = () => this.status === "reconnecting" && this._connect();
    addEventListener("online", this._online);
    // Deferred, so handlers added right after construction see "connecting".
    queueMicrotask(() => this._connect());
  }

  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this._handlers.get(event)?.delete(fn);
    return this;
  }

  /** The last id delivered on each channel: pass it as `since` to another client to carry on. */
  positions() {
    return Object.fromEntries(this._positions);
  }

  /** Add a channel: live, or since an id (0: all history) or "latest"; with since, restart one there. */
  subscribe(channel, since) {
    if (this._channels.has(channel) && since === undefined) return;
    this._channels.add(channel);
    this._latestAt.delete(channel);
    if (since === "latest") {
      this._positions.delete(channel);
      this._latest.add(channel);
    } else if (since !== undefined) {
      this._latest.delete(channel);
      this._positions.set(channel, since);
    }
    if (this.transport === "websocket") {
      if (this._isOpen()) this._subscribeFrame(channel);
    } else {
      this._reopenSoon();
    }
  }

  unsubscribe(channel) {
    if (!this._channels.delete(channel)) return;
    this._positions.delete(channel);
    this._latest.delete(channel);
    this._latestAt.delete(channel);
    this._awaiting.delete(channel);
    if (this.transport === "websocket") {
      if (this._isOpen()) this._send({ type: "unsubscribe", channel });
    } else {
      this._reopenSoon();
    }
  }

  /** Publish over the WebSocket; resolves with the message id. Over SSE use httpPublish(). */
  publish(channel, data) {
    if (this.transport !== "websocket") {
      return Promise.reject(new Error("publish() needs the WebSocket transport; use httpPublish()"));
    }
    if (!this._isOpen()) return Promise.reject(new Error("not connected"));
    const ref = String(++this._ref);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this._settle(ref, new Error("no answer")), PUBLISH_TIMEOUT_MS);
      this._pending.set(ref, { resolve, reject, timer });
      this._send({ type: "publish", channel, data, ref });
    });
  }

  close() {
    if (this.status === "closed") return;
    clearTimeout(this._retryTimer);
    removeEventListener("online", this._online);
    this._teardown();
    this._setStatus("closed");
  }

  // Connection lifecycle.

  _connect(quiet = false) {
    if (this.status === "closed") return;
    clearTimeout(this._retryTimer);
    this._teardown();
    if (!quiet) this._setStatus("connecting");
    this._touch(); // a connection that does not open in time counts as idle
    if (this.transport === "websocket") this._openWebSocket();
    else this._openEventSource();
  }

  _live() {
    this.attempt = 0;
    this._setStatus("live");
  }

  _fail() {
    if (this.status === "closed") return;
    this._teardown();
    // Exponential backoff with jitter: half the step plus a random half.
    const step = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = step / 2 + (Math.random() * step) / 2;
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this._setStatus("reconnecting");
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _teardown() {
    clearTimeout(this._idleTimer);
    clearInterval(this._pingTimer);
    clearTimeout(this._reopenTimer);
    this._opened = false;
    this._token = {}; // invalidates a pending SSE open
    this._latestAt.clear(); // a new connection resumes after the ids it has
    if (this._socket) {
      const socket = this._socket;
      this._socket = null;
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close();
    }
    if (this._source) {
      this._source.close();
      this._source = null;
    }
    for (const ref of [...this._pending.keys()]) this._settle(ref, new Error("connection lost"));
  }

  // Anything received proves the connection alive. If nothing, not even a
  // pong, arrives for 2.5 heartbeats, the connection is presumed dead.
  _touch() {
    clearTimeout(this._idleTimer);
    this._idleTimer = setTimeout(() => this._idle(), this.heartbeat * 2.5);
  }

  _idle() {
    // EventSource hides the server's heartbeat comments, so a quiet stream
    // is replaced without fuss; it only counts as a failure if the
    // replacement does not open either.
    if (this.transport === "sse" && this._opened && this.status === "live") this._connect(true);
    else this._fail();
  }

  _setStatus(status) {
    if (status === "live" && this.status === "live") return; // e.g. a quiet SSE replacement
    this.status = status;
    const retryIn = status === "reconnecting" ? Math.max(0, (this.retryAt - Date.now()) / 1000) : 0;
    this._emit("status", { status, transport: this.transport, retryIn, attempt: this.attempt });
  }

  _emit(event, value) {
    for (const fn of this._handlers.get(event) || []) {
      try {
        fn(value);
      } catch (err) {
        queueMicrotask(() => {
          throw err; // reported, without breaking the client
        });
      }
    }
  }

  // What both transports deliver.

  _deliver(message) {
    const { channel, id } = message;
    if (!this._channels.has(channel)) return;
    const last = this._positions.get(channel);
    const latest = this._latestAt.get(channel); // the newest message a "latest" subscribe replays
    this._latestAt.delete(channel);
    if (last !== undefined && id <= last && id !== latest) return; // already delivered
    this._positions.set(channel, id);
    this._latest.delete(channel);
    this._emit("message", { channel, id, data: message.data });
  }

  _reset(frame) {
    if (!this._channels.has(frame.channel)) return;
    // What follows is whatever history still holds: deliver all of it.
    this._positions.set(frame.channel, 0);
    this._emit("reset", { channel: frame.channel, id: frame.id, reason: frame.reason });
  }

  _receive(event) {
    this._touch();
    try {
      return JSON.parse(event.data);
    } catch {
      return null;
    }
  }

  // Both transports carry the same frames; SSE only "message" and "reset".
  _onFrame(frame) {
    switch (frame?.type) {
      case "message":
        this._deliver(frame);
        break;
      case "subscribed":
        // A channel with nothing delivered yet resumes from where it began.
        if (this._channels.has(frame.channel) && !this._positions.has(frame.channel)) {
          this._positions.set(frame.channel, frame.id);
          // Asked for "latest": the message with this very id may follow, once.
          if (this._latest.delete(frame.channel)) this._latestAt.set(frame.channel, frame.id);
        }
        this._subscribedOne(frame.channel);
        break;
      case "reset":
        this._reset(frame);
        break;
      case "published":
        this._settle(frame.ref, null, frame.id);
        break;
      case "error":
        this._onError(frame);
        break;
    }
  }

  // WebSocket.

  _isOpen() {
    return this._socket?.readyState === WebSocket.OPEN;
  }

  _currentToken() {
    return (typeof this.token === "function" ? this.token() : this.token) || "";
  }

  _tokenQuery() {
    const token = this._currentToken();
    return token ? `token=${encodeURIComponent(token)}` : "";
  }

  _send(frame) {
    if (this._isOpen()) this._socket.send(JSON.stringify(frame));
  }

  _openWebSocket() {
    const auth = this._tokenQuery();
    const socket = new WebSocket(`${this.url.replace(/^http/, "ws")}/ws${auth ? `?${auth}` : ""}`);
    this._socket = socket;
    socket.onopen = () => {
      this._opened = true;
      this._touch();
      this._awaiting.clear();
      for (const channel of this._channels) this._subscribeFrame(channel);
      if (!this._awaiting.size) this._live();
      this._pingTimer = setInterval(() => this._send({ type: "ping" }), this.heartbeat);
    };
    socket.onmessage = (event) => this._onFrame(this._receive(event));
    socket.onclose = () => this._fail();
  }

  _subscribeFrame(channel) {
    const frame = { type: "subscribe", channel };
    if (this._positions.has(channel)) frame.since = this._positions.get(channel);
    else if (this._latest.has(channel)) frame.since = "latest";
    this._awaiting.add(channel);
    this._send(frame);
  }

  _subscribedOne(channel) {
    if (this._awaiting.delete(channel) && !this._awaiting.size && this.status !== "live") this._live();
  }

  _onError(frame) {
    if (frame.ref && this._pending.has(frame.ref)) {
      this._settle(frame.ref, Object.assign(new Error(frame.message), { code: frame.code }));
      return;
    }
    if (frame.channel && this._awaiting.has(frame.channel)) {
      if (frame.code === "broker_unavailable" || frame.code === "shutting_down") {
        this._fail(); // temporary: try the whole connection again later
        return;
      }
      this._channels.delete(frame.channel); // refused for good (bad_channel, too_many_channels)
      this._positions.delete(frame.channel);
      this._latest.delete(frame.channel);
      this._subscribedOne(frame.channel);
    }
    this._emit("error", { code: frame.code, message: frame.message, channel: frame.channel });
  }

  _settle(ref, error, id) {
    const pending = this._pending.get(ref);
    if (!pending) return;
    this._pending.delete(ref);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(id);
  }

  // Server-Sent Events.

  _reopenSoon() {
    // Several subscribe() calls in a row cost one new stream.
    clearTimeout(this._reopenTimer);
    if (this.status === "live" || this.status === "connecting") {
      this._reopenTimer = setTimeout(() => this._connect(this.status === "live"), 0);
    }
  }

  async _openEventSource() {
    const token = this._token;
    if (!this._channels.size) {
      clearTimeout(this._idleTimer);
      this._live(); // nothing to listen to
      return;
    }
    await this._learnLatest([...this._channels].filter((c) => !this._positions.has(c)));
    if (token !== this._token) return; // torn down meanwhile
    const query = new URLSearchParams();
    for (const channel of this._channels) query.append("channel", channel);
    const cursor = [...this._positions].map(([channel, id]) => `${channel}=${id}`).join(",");
    if (cursor) query.set("last_event_id", cursor);
    const subscribeToken = this._currentToken();
    if (subscribeToken) query.set("token", subscribeToken);
    const source = new EventSource(`${this.url}/events?${query}`);
    this._source = source;
    source.onopen = () => {
      this._opened = true;
      this._touch();
      this._live();
    };
    source.onmessage = (event) => this._onFrame(this._receive(event)); // a message or a reset
    source.addEventListener("ping", () => this._touch()); // should the server ever send named pings
    // EventSource would retry by itself, but without backoff or a countdown,
    // and with a cursor of its own: start over under our control instead.
    source.onerror = () => this._source === source && this._fail();
  }

  // A channel subscribed "from now" over SSE: learn where "now" is before
  // the stream opens, so a stream replaced before its first message still
  // resumes from there (the stream's own starting id is invisible to scripts).
  // A channel asked for at "latest" is handed its newest message from the
  // same answer, and the stream resumes after it.
  async _learnLatest(channels) {
    await Promise.all(
      channels.map(async (channel) => {
        try {
          const auth = this._tokenQuery();
          const answer = await fetch(
            `${this.url}/api/channels/${encodeURIComponent(channel)}${auth ? `?${auth}` : ""}`,
          );
          if (!answer.ok) return;
          const body = await answer.json();
          if (this.status === "closed") return;
          if (!this._channels.has(channel) || this._positions.has(channel)) return;
          if (this._latest.has(channel) && body.latest?.channel === channel) this._deliver(body.latest);
          else this._positions.set(channel, body.latest ? body.latest.id : 0);
          this._latest.delete(channel);
        } catch {
          // Unknown: the stream then starts live on this channel.
        }
      }),
    );
  }
}

/** Publish over HTTP (POST /api/channels/NAME); resolves with the message id. */
export async function httpPublish(url, channel, data, key) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const base = String(url || location.origin).replace(/\/+$/, "");
  const answer = await fetch(`${base}/api/channels/${encodeURIComponent(channel)}`, {
    method: "POST",
    headers,
    body: JSON.stringify(data),
  });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw Object.assign(new Error(body.message || answer.statusText), { code: body.code });
  return body.id;
}
