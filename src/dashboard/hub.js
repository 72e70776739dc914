// One WebSocket for the whole app, shared by the pages: each page subscribes to the topics it shows
// and gets their messages; a topic is followed on the server while at least one page wants it.
// Handlers also get {type: "resync"} when events may have been missed (a gap in `seq`), and on every
// open of the connection, the first included: what a page loaded before its topics were subscribed
// (or while the connection was down) may be stale, and list topics have no snapshot.

import { LiveConnection } from "./live.js";

export class TopicHub {
  constructor({ getToken, onStatus }) {
    this.handlers = new Map();
    this.live = new LiveConnection({
      url: location.origin,
      getToken,
      onMessage: (message) => this.dispatch(message),
      onGap: (topic) => this.emit(topic, { type: "resync", topic }),
      onStatus: (status, code) => this.status(status, code, onStatus),
    });
  }

  /** Follows `topic`, calling `handler(message)`; returns the function that stops. */
  subscribe(topic, handler) {
    let set = this.handlers.get(topic);
    if (!set) {
      set = new Set();
      this.handlers.set(topic, set);
      this.live.subscribe(topic);
    }
    set.add(handler);
    return () => {
      set.delete(handler);
      if (set.size === 0 && this.handlers.get(topic) === set) {
        this.handlers.delete(topic);
        this.live.unsubscribe(topic);
      }
    };
  }

  /** Hands a fresh access token to the open connection so the server does not close it at expiry. */
  reauthenticate(token) {
    this.live.send({ type: "auth", data: { token } });
  }

  close() {
    this.handlers.clear();
    this.live.close();
  }

  dispatch(message) {
    if (message.type === "error") {
      console.warn("live update error", message.data);
      return;
    }
    if (message.topic && (message.type === "event" || message.type === "snapshot")) this.emit(message.topic, message);
  }

  emit(topic, message) {
    for (const handler of [...(this.handlers.get(topic) ?? [])]) {
      try {
        handler(message);
      } catch (error) {
        console.error("live handler failed", topic, error);
      }
    }
  }

  /** "open" comes after the topics were subscribed, so a page refetching now misses no event. */
  status(status, code, onStatus) {
    if (status === "open") for (const topic of [...this.handlers.keys()]) this.emit(topic, { type: "resync", topic });
    onStatus(status, code);
  }
}
