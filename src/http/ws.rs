//! `GET /api/v1/ws`: live updates. Each connection is a `WsSession` actor registered with the
//! [`EventHub`]; the protocol is in `docs/PROTOCOL.md` ("WebSocket").
//!
//! Writes go through a bounded queue to a writer task, so a slow client never slows the hub, other
//! sessions or the server: when its queue is full the session is closed with 1013.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use chrono::{DateTime, Utc};
use phoenix_actors::hub::{
    session_topic, valid_topic, Deliver, Disconnect, EventHub, SessionEnded, Subscribe, Unsubscribe, SESSION_ENDED,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::access::CurrentUser;
use super::{ApiError, AppState};

/// Frames a session may have waiting to be written before it counts as too slow.
pub const SESSION_QUEUE: usize = 256;
/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The server pings this often…
const PING_EVERY: Duration = Duration::from_secs(15);
/// …and drops a peer it has not heard from for this long.
const SILENT_LIMIT: Duration = Duration::from_secs(45);
/// Topics one session may follow at once (bounds what a session can make the hub hold).
pub const MAX_TOPICS: usize = 100;
/// Close code when the access token expires (application range 4000–4999).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code when the user's session ended: logged out, deactivated, or given another role.
pub const CLOSE_SESSION_ENDED: u16 = 4003;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// `GET /api/v1/ws` (token in `Authorization: Bearer` or `?access_token=`): upgrades to a session.
#[utoipa::path(get, path = "/api/v1/ws", tag = "live",
    params(("access_token" = Option<String>, Query, description = "The access token, for clients that cannot set headers")),
    responses((status = 101, description = "Switching to the WebSocket protocol (messages: docs/ARCHITECTURE.md)")))]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    caller: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let (queue, pending) = mpsc::channel(SESSION_QUEUE);
    let (abort, aborted) = oneshot::channel();
    let (written, writer_done) = oneshot::channel::<()>();
    actix_web::rt::spawn(async move {
        write(session, pending, aborted).await;
        let _ = written.send(());
    });
    let ws = WsSession {
        id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        hub: state.hub.clone(),
        state: state.clone(),
        queue,
        abort: Some(abort),
        topics: HashSet::new(),
        last_heard: Instant::now(),
        expires_at: caller.claims.expires_at(),
        user_id: caller.claims.sub.clone(),
        sid: caller.claims.sid.clone(),
        control_topic: session_topic(&caller.claims.sub),
        expiry: None,
        closing: false,
        left_hub: false,
    };
    // A message may come in several frames (RFC 6455 §5.4): they are joined, up to the same limit.
    let stream =
        stream.max_frame_size(MAX_FRAME_BYTES).aggregate_continuations().max_continuation_size(MAX_FRAME_BYTES);
    WsSession::create(|ctx| {
        ctx.add_stream(stream);
        // The session ends when its writer has sent everything (a close frame last); stopping earlier
        // would drop the connection before the client saw why.
        ctx.spawn(writer_done.into_actor(&ws).map(|_, _, ctx| ctx.stop()));
        ws
    });
    Ok(response)
}

/// What the writer task sends.
enum Outgoing {
    Text(String),
    /// A frame the hub rendered once for every session: written without a copy.
    Shared(bytestring::ByteString),
    Ping,
    Pong(web::Bytes),
    Close(CloseReason),
}

/// How long a closing session waits for the client to take the close frame before cutting it off.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Writes queued frames in order; stops at once when `aborted` (a slow consumer), sending the close
/// frame if the client reads again within [`CLOSE_GRACE`].
async fn write(
    mut session: actix_ws::Session,
    mut pending: mpsc::Receiver<Outgoing>,
    mut aborted: oneshot::Receiver<CloseReason>,
) {
    loop {
        let next = tokio::select! {
            biased;
            reason = &mut aborted => return close_within_grace(session, reason.ok()).await,
            next = pending.recv() => next,
        };
        let outcome = match next {
            Some(Outgoing::Text(text)) => send_or_abort(session.text(text), &mut aborted).await,
            Some(Outgoing::Shared(text)) => send_or_abort(session.text(text), &mut aborted).await,
            Some(Outgoing::Ping) => send_or_abort(session.ping(b""), &mut aborted).await,
            Some(Outgoing::Pong(bytes)) => send_or_abort(session.pong(&bytes), &mut aborted).await,
            Some(Outgoing::Close(reason)) => return close_within_grace(session, Some(reason)).await,
            None => return close_within_grace(session, None).await,
        };
        match outcome {
            Written::Sent => {}
            Written::Gone => return,
            Written::Aborted(reason) => return close_within_grace(session, reason).await,
        }
    }
}

async fn close_within_grace(session: actix_ws::Session, reason: Option<CloseReason>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, session.close(reason)).await;
}

enum Written {
    Sent,
    /// The connection is gone.
    Gone,
    /// The session was aborted while the frame waited: close with this reason instead.
    Aborted(Option<CloseReason>),
}

async fn send_or_abort(
    send: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
    aborted: &mut oneshot::Receiver<CloseReason>,
) -> Written {
    tokio::select! {
        sent = send => if sent.is_ok() { Written::Sent } else { Written::Gone },
        reason = aborted => Written::Aborted(reason.ok()),
    }
}

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        topic: String,
    },
    Unsubscribe {
        topic: String,
    },
    Ping,
    /// A fresh access token, to stay connected past the old one's expiry.
    Auth {
        data: AuthData,
    },
}

#[derive(Debug, Deserialize)]
struct AuthData {
    token: String,
}

pub struct WsSession {
    id: u64,
    hub: Addr<EventHub>,
    state: web::Data<AppState>,
    queue: mpsc::Sender<Outgoing>,
    abort: Option<oneshot::Sender<CloseReason>>,
    topics: HashSet<String>,
    last_heard: Instant,
    expires_at: DateTime<Utc>,
    /// Whose session this is, and the login session (`sid`) of its token: a logout ends only that one.
    user_id: String,
    sid: String,
    /// The hub's topic of this user's session events (`session:<user id>`).
    control_topic: String,
    expiry: Option<SpawnHandle>,
    /// A close is under way: nothing more is read or queued.
    closing: bool,
    /// The hub was told this session is gone.
    left_hub: bool,
}

impl WsSession {
    /// Queues a frame; a full queue means the client cannot keep up: it is closed with 1013.
    fn send(&mut self, frame: Outgoing, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        match self.queue.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(ws.session = self.id, "WebSocket client too slow: closed with 1013");
                self.state.metrics.ws_slow_consumer_closed();
                let reason = CloseReason {
                    code: CloseCode::Again,
                    description: Some(format!("too slow: more than {SESSION_QUEUE} messages waiting")),
                };
                self.abort_with(reason);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    /// Takes this session off every topic it had and its user's control topic, once (closing and
    /// stopping both call it).
    fn leave_hub(&mut self) {
        if self.left_hub {
            return;
        }
        self.left_hub = true;
        let mut topics: Vec<String> = std::mem::take(&mut self.topics).into_iter().collect();
        topics.push(self.control_topic.clone());
        self.hub.do_send(Disconnect { session: self.id, topics });
    }

    /// An event on the user's control topic: the session closes when it is the one that ended.
    fn on_session_event(&mut self, frame: &str, ctx: &mut Context<Self>) {
        let Ok(event) = serde_json::from_str::<Value>(frame) else { return };
        if event["event"] != SESSION_ENDED {
            return;
        }
        let Ok(ended) = serde_json::from_value::<SessionEnded>(event["data"].clone()) else { return };
        if ended.sid.as_ref().is_none_or(|sid| *sid == self.sid) {
            tracing::info!(ws.session = self.id, user.id = %self.user_id, reason = %ended.reason, "live session ended");
            self.error("session_ended", format!("{}; log in again", ended.reason), ctx);
            self.close(CloseCode::Other(CLOSE_SESSION_ENDED), &ended.reason, ctx);
        }
    }

    /// Stops delivering, drops what is queued, and has the writer send `reason` at once.
    fn abort_with(&mut self, reason: CloseReason) {
        self.closing = true;
        self.leave_hub();
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(reason);
        }
    }

    fn reply(&mut self, kind: &str, topic: Option<&str>, data: Value, ctx: &mut Context<Self>) {
        let mut frame = json!({"type": kind, "data": data, "ts": Utc::now()});
        if let Some(topic) = topic {
            frame["topic"] = json!(topic);
        }
        self.send(Outgoing::Text(frame.to_string()), ctx);
    }

    fn error(&mut self, code: &str, message: String, ctx: &mut Context<Self>) {
        self.reply("error", None, json!({"code": code, "message": message}), ctx);
    }

    /// Sends what is queued, then closes with `code`. A client that does not read is cut off after
    /// [`CLOSE_GRACE`]: the writer could be stuck behind frames it never takes.
    fn close(&mut self, code: CloseCode, description: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let reason = CloseReason { code, description: Some(description.to_string()) };
        match self.queue.try_send(Outgoing::Close(reason.clone())) {
            Ok(()) => {
                self.closing = true;
                self.leave_hub();
                ctx.run_later(CLOSE_GRACE, move |session, _| session.abort_with(reason));
            }
            Err(mpsc::error::TrySendError::Full(Outgoing::Close(reason))) => self.abort_with(reason),
            Err(_) => self.closing = true,
        }
    }

    fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.expiry.take() {
            ctx.cancel_future(timer);
        }
        let wait = (self.expires_at - Utc::now()).to_std().unwrap_or_default();
        self.expiry = Some(ctx.run_later(wait, |session, ctx| {
            session.error("token_expired", "the access token expired; reconnect with a fresh one".into(), ctx);
            session.close(CloseCode::Other(CLOSE_TOKEN_EXPIRED), "token expired", ctx);
        }));
    }

    fn handle_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(e) => return self.error("bad_message", format!("not a message this server understands: {e}"), ctx),
        };
        match message {
            ClientMessage::Ping => self.reply("pong", None, Value::Null, ctx),
            ClientMessage::Subscribe { topic } => self.subscribe(topic, ctx),
            ClientMessage::Unsubscribe { topic } => {
                self.hub.do_send(Unsubscribe { session: self.id, topic: topic.clone() });
                self.topics.remove(&topic);
                self.reply("unsubscribed", Some(&topic), Value::Null, ctx);
            }
            ClientMessage::Auth { data } => self.reauthenticate(data.token, ctx),
        }
    }

    /// Registers with the hub, then sends the current state of a single entity before any event: while
    /// the snapshot is read the session handles nothing else, so events wait behind it.
    fn subscribe(&mut self, topic: String, ctx: &mut Context<Self>) {
        if let Err(message) = valid_topic(&topic) {
            return self.error("unknown_topic", message, ctx);
        }
        if !self.topics.contains(&topic) && self.topics.len() >= MAX_TOPICS {
            return self.error("too_many_topics", format!("at most {MAX_TOPICS} topics per connection"), ctx);
        }
        self.hub.do_send(Subscribe { session: self.id, topic: topic.clone(), recipient: ctx.address().recipient() });
        self.topics.insert(topic.clone());
        self.reply("subscribed", Some(&topic), Value::Null, ctx);
        let state = self.state.clone();
        let snapshot_topic = topic.clone();
        ctx.wait(async move { snapshot(&state, &snapshot_topic).await }.into_actor(self).map(
            move |found, session, ctx| match found {
                Ok(Some(data)) => session.reply("snapshot", Some(&topic), data, ctx),
                Ok(None) => {}
                Err(message) => session.error("snapshot_failed", message, ctx),
            },
        ));
    }

    fn reauthenticate(&mut self, token: String, ctx: &mut Context<Self>) {
        let state = self.state.clone();
        ctx.wait(async move { state.auth.authenticate(&token).await }.into_actor(self).map(|checked, session, ctx| {
            match checked {
                Ok((_, claims)) if claims.sub != session.user_id => {
                    session.error("unauthenticated", "the token belongs to another user".into(), ctx)
                }
                Ok((_, claims)) => {
                    session.sid = claims.sid.clone();
                    session.expires_at = claims.expires_at();
                    session.schedule_expiry(ctx);
                    session.reply("authenticated", None, json!({"expires_at": session.expires_at}), ctx);
                }
                Err(e) => session.error("unauthenticated", e.to_string(), ctx),
            }
        }));
    }
}

/// The current state of the entity a topic names (`experiment:<id>`, `deployment:<id>`), if any.
async fn snapshot(state: &AppState, topic: &str) -> Result<Option<Value>, String> {
    let Some((family, id)) = topic.split_once(':') else { return Ok(None) };
    let found = match family {
        "experiment" => state.store.get_experiment(id).await.map(|e| e.view_json()),
        "deployment" => state.store.get_deployment(id).await.map(|d| d.view_json()),
        _ => return Ok(None),
    };
    match found {
        Ok(value) => Ok(Some(value)),
        Err(phoenix_actors::StoreError::NotFound) => Ok(Some(Value::Null)),
        Err(e) => Err(format!("cannot read the current state: {e}")),
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.state.metrics.ws_session_opened();
        let recipient = ctx.address().recipient();
        self.hub.do_send(Subscribe { session: self.id, topic: self.control_topic.clone(), recipient });
        self.schedule_expiry(ctx);
        ctx.run_interval(PING_EVERY, |session, ctx| {
            if session.last_heard.elapsed() > SILENT_LIMIT {
                tracing::info!(ws.session = session.id, "WebSocket peer silent: dropped");
                return session.close(CloseCode::Away, "no answer to pings", ctx);
            }
            session.send(Outgoing::Ping, ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.state.metrics.ws_session_closed();
        self.leave_hub();
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if *msg.topic == *self.control_topic {
            return self.on_session_event(&msg.frame, ctx);
        }
        self.send(Outgoing::Shared(msg.frame), ctx);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.handle_text(&text, ctx),
            Ok(AggregatedMessage::Ping(bytes)) => self.send(Outgoing::Pong(bytes), ctx),
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Binary(_)) => {
                self.error("bad_message", "only text messages of JSON are understood".into(), ctx)
            }
            Ok(AggregatedMessage::Close(_)) => ctx.stop(),
            // A frame over the limit, or the frames of one message together over it.
            Err(ProtocolError::Overflow | ProtocolError::Io(_)) => {
                self.close(CloseCode::Size, &format!("messages are limited to {MAX_FRAME_BYTES} bytes"), ctx)
            }
            Err(e) => self.close(CloseCode::Protocol, &e.to_string(), ctx),
        }
    }

    /// The client's side ended: nobody is left to write to.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.closing {
            ctx.stop();
        }
    }
}
