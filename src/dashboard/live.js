// Phoenix live updates: a client of GET /api/v1/ws (protocol: docs/LIVE.md).
//
//   import { LiveConnection } from "./live.js";
//   const live = new LiveConnection({
//     url: "http://localhost:8080",           // the server (http(s) or ws(s))
//     getToken: async ({ force }) => token,   // called on every (re)connect; refresh the token here
//                                             // (`force`: refresh even if it looks valid)
//     onMessage: (message) => { ... },        // every server message: snapshot, event, error, …
//     onGap: (topic) => { ... },              // events of `topic` were missed: refetch its state
//     onStatus: (status) => { ... },          // "connecting" | "open" | "closed" (with the close code)
//   });
//   live.subscribe("experiment:0195…");
//   live.close();
//
// It reconnects with exponential backoff (0.5 s doubling to 30 s, with jitter), subscribes again to
// every topic it had, and notices gaps with each topic's `seq`. "open" is reported once the topics are
// subscribed again, so a refetch on "open" cannot miss an event. A close for an expired token (4001)
// reconnects at once with a fresh token from getToken(); after a few connects in a row that failed
// before opening (a refused upgrade reads as 1006: the token may have been revoked), getToken is asked
// to refresh the token whatever its expiry says.

const TOKEN_EXPIRED = 4001;
const ABNORMAL_CLOSE = 1006;
const FAILED_CONNECTS_BEFORE_REFRESH = 3;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

export function websocketUrl(server, token) {
  const base = server.replace(/\/+$/, "").replace(/^http(s?):\/\//, (_, s) => `ws${s}://`);
  return `${base}/api/v1/ws?access_token=${encodeURIComponent(token)}`;
}

export class LiveConnection {
  constructor({ url, getToken, onMessage = () => {}, onGap = () => {}, onStatus = () => {}, WebSocketImpl }) {
    this.url = url;
    this.getToken = getToken;
    this.onMessage = onMessage;
    this.onGap = onGap;
    this.onStatus = onStatus;
    this.WebSocketImpl = WebSocketImpl ?? globalThis.WebSocket;
    this.topics = new Set();
    this.lastSeq = new Map();
    this.delay = FIRST_DELAY_MS;
    this.failedConnects = 0;
    this.closedByUs = false;
    this.socket = null;
    this.connect();
  }

  /** Follows a topic (again after every reconnect). */
  subscribe(topic) {
    this.topics.add(topic);
    this.send({ type: "subscribe", topic });
  }

  /** Stops following a topic. */
  unsubscribe(topic) {
    this.topics.delete(topic);
    this.lastSeq.delete(topic);
    this.send({ type: "unsubscribe", topic });
  }

  /** Closes for good (no reconnect). */
  close() {
    this.closedByUs = true;
    this.socket?.close(1000, "bye");
  }

  send(message) {
    if (this.socket?.readyState === 1) this.socket.send(JSON.stringify(message));
  }

  async connect() {
    if (this.closedByUs) return;
    this.onStatus("connecting");
    let token;
    try {
      token = await this.getToken({ force: this.takeForcedRefresh() });
    } catch (error) {
      return this.retry();
    }
    // close() may have been called while the token was being fetched.
    if (this.closedByUs) return;
    const socket = new this.WebSocketImpl(websocketUrl(this.url, token));
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.delay = FIRST_DELAY_MS;
      this.failedConnects = 0;
      // `seq` counts per server replica: this connection may be served by another one.
      this.lastSeq.clear();
      for (const topic of this.topics) this.send({ type: "subscribe", topic });
      this.onStatus("open");
    };
    socket.onmessage = (frame) => this.receive(frame.data);
    socket.onclose = (event) => {
      if (!opened && event.code === ABNORMAL_CLOSE) this.failedConnects += 1;
      this.onStatus("closed", event.code);
      if (this.closedByUs) return;
      if (event.code === TOKEN_EXPIRED) return this.connect();
      this.retry();
    };
  }

  /** True once per run of failed connects long enough to suspect the token (and starts counting again). */
  takeForcedRefresh() {
    if (this.failedConnects < FAILED_CONNECTS_BEFORE_REFRESH) return false;
    this.failedConnects = 0;
    return true;
  }

  retry() {
    if (this.closedByUs) return;
    const wait = this.delay * (0.5 + Math.random() / 2);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    setTimeout(() => this.connect(), wait);
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.type === "snapshot" && message.topic) this.lastSeq.delete(message.topic);
    if (message.type === "event" && message.topic && Number.isInteger(message.seq)) {
      const last = this.lastSeq.get(message.topic);
      if (last !== undefined && message.seq > last + 1) this.onGap(message.topic);
      this.lastSeq.set(message.topic, message.seq);
    }
    this.onMessage(message);
  }
}
