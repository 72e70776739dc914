// Drives src/dashboard/live.js against a running server (run by tests/api/ws.rs with
// `node --experimental-websocket`): subscribe, receive the snapshot and an event, survive a dropped
// connection by reconnecting and subscribing again. Prints one JSON line per step; exits 1 on failure.
import { LiveConnection } from "../../src/dashboard/live.js";

const [server, token, topic] = process.argv.slice(2);
const seen = [];
const statuses = [];
const fail = (why) => {
  console.log(JSON.stringify({ ok: false, why, seen, statuses }));
  process.exit(1);
};
setTimeout(() => fail("timed out"), 20_000);

let opened = 0;
const live = new LiveConnection({
  url: server,
  getToken: async () => token,
  onStatus: (status) => {
    statuses.push(status);
    if (status === "open") {
      opened += 1;
      console.log(JSON.stringify({ step: "open", count: opened }));
      if (opened === 2) console.log(JSON.stringify({ step: "resubscribed" }));
    }
  },
  onMessage: (message) => {
    seen.push(message.type);
    console.log(JSON.stringify({ step: "message", type: message.type, topic: message.topic ?? null, event: message.event ?? null }));
    if (message.type === "snapshot" && opened === 1) live.socket.close(4000, "test drops the connection");
    if (message.type === "snapshot" && opened === 2) {
      live.close();
      console.log(JSON.stringify({ ok: true, seen, statuses }));
      process.exit(0);
    }
  },
});
live.subscribe(topic);
