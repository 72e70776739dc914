//! A client of the live-updates WebSocket (`/api/v1/ws`), for `watch` commands and tests: connect with
//! an access token, subscribe to topics, read the server's messages (pings are answered by the
//! library; `seq` gaps are reported).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the connection gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A JSON message (`subscribed`, `snapshot`, `event`, `error`, `pong`, …).
    Message(Value),
    /// The server closed the connection with this code and reason.
    Closed(u16, String),
}

/// Why a connection or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: Box<tokio_tungstenite::tungstenite::Error> },
    #[error("connection lost: {0}")]
    Lost(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("the server sent a frame that is not JSON: {0}")]
    NotJson(String),
}

impl LiveError {
    /// The server refused the upgrade for the token (401): a fresh one may do.
    pub fn is_unauthorized(&self) -> bool {
        use tokio_tungstenite::tungstenite::Error;
        matches!(self, LiveError::Connect { source, .. } if matches!(source.as_ref(), Error::Http(r) if r.status() == 401))
    }
}

/// One live connection.
pub struct LiveClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The last `seq` seen per topic, to notice gaps.
    last_seq: HashMap<String, u64>,
    gaps: u64,
}

impl LiveClient {
    /// Connects to `server` (`http://host:port`) with an access token.
    pub async fn connect(server: &str, token: &str) -> Result<LiveClient, LiveError> {
        let url = format!("{}/api/v1/ws?access_token={token}", ws_base(server));
        let (stream, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| LiveError::Connect { url: ws_base(server) + "/api/v1/ws", source: Box::new(e) })?;
        Ok(LiveClient { stream, last_seq: HashMap::new(), gaps: 0 })
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, message: &Value) -> Result<(), LiveError> {
        self.stream.send(Message::text(message.to_string())).await.map_err(|e| LiveError::Lost(Box::new(e)))
    }

    /// Sends `text` as one message in several frames (a first text frame, then continuations), as RFC
    /// 6455 allows a client to; tests check that the server joins them.
    pub async fn send_fragmented(&mut self, text: &str, frames: usize) -> Result<(), LiveError> {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        let bytes = text.as_bytes();
        let size = bytes.len().div_ceil(frames.max(1)).max(1);
        let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { Data::Text } else { Data::Continue };
            let frame = Frame::message(piece.to_vec(), OpCode::Data(opcode), i + 1 == pieces.len());
            self.stream.feed(Message::Frame(frame)).await.map_err(|e| LiveError::Lost(Box::new(e)))?;
        }
        self.stream.flush().await.map_err(|e| LiveError::Lost(Box::new(e)))
    }

    /// Sends raw text (tests send what a broken client would).
    pub async fn send_text(&mut self, text: String) -> Result<(), LiveError> {
        self.stream.send(Message::text(text)).await.map_err(|e| LiveError::Lost(Box::new(e)))
    }

    /// Asks for a topic's events.
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), LiveError> {
        self.send(&json!({"type": "subscribe", "topic": topic})).await
    }

    /// The next message, or `None` when nothing came within `wait` or the stream ended.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Received>, LiveError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(frame)) => frame.map_err(|e| LiveError::Lost(Box::new(e)))?,
            };
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).map_err(|_| LiveError::NotJson(text.to_string()))?;
                    self.track_seq(&value);
                    return Ok(Some(Received::Message(value)));
                }
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((u16::from(CloseCode::Status), String::new()));
                    return Ok(Some(Received::Closed(code, reason)));
                }
                // Pings are answered by the library; pongs and raw frames carry nothing for us.
                _ => continue,
            }
        }
    }

    /// The next JSON message within `wait`; `None` when nothing came or the connection closed.
    pub async fn next_message(&mut self, wait: Duration) -> Result<Option<Value>, LiveError> {
        match self.next(wait).await? {
            Some(Received::Message(value)) => Ok(Some(value)),
            _ => Ok(None),
        }
    }

    /// Events missed so far according to `seq` (a jump of more than one on a topic).
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    fn track_seq(&mut self, value: &Value) {
        let (Some(topic), Some(seq)) = (value["topic"].as_str(), value["seq"].as_u64()) else { return };
        if let Some(last) = self.last_seq.insert(topic.to_string(), seq) {
            self.gaps += seq.saturating_sub(last + 1);
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// `http://h:p` -> `ws://h:p`, `https://` -> `wss://`.
fn ws_base(server: &str) -> String {
    let server = server.trim_end_matches('/');
    if let Some(rest) = server.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = server.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        server.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_addresses_become_websocket_addresses() {
        assert_eq!(ws_base("http://127.0.0.1:8080/"), "ws://127.0.0.1:8080");
        assert_eq!(ws_base("https://phoenix.example"), "wss://phoenix.example");
    }
}
