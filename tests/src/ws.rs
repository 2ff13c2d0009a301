//! WebSocket client for black-box tests: a real `tokio-tungstenite` client
//! on a real socket, with helpers that await a matching message under a
//! deadline and keep everything received for the failure message.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Node;

/// How long a pushed message may take to arrive in tests ("at once").
pub const PUSH_DEADLINE: Duration = Duration::from_secs(1);

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every text message received so far, in order.
    pub seen: Vec<Value>,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed {
        code: u16,
        reason: String,
    },
    /// Reset or EOF without a close frame.
    Dropped,
}

fn ws_url(node: &Node) -> String {
    node.url("/v1/ws").replacen("http://", "ws://", 1)
}

impl WsClient {
    /// Connects, with `Authorization: Bearer token` if given.
    pub async fn connect(node: &Node, token: Option<&str>) -> WsClient {
        Self::try_connect(node, token)
            .await
            .unwrap_or_else(|e| panic!("websocket connect: {e}"))
    }

    pub async fn try_connect(
        node: &Node,
        token: Option<&str>,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let mut req = ws_url(node).into_client_request()?;
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(WsClient {
            stream,
            seen: Vec::new(),
        })
    }

    /// A client whose socket has a tiny receive buffer, so a client that
    /// stops reading backs up to the server quickly.
    pub async fn connect_with_small_buffer(node: &Node) -> WsClient {
        let addr: std::net::SocketAddr = node
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("node address");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("connect");
        let (stream, _) = tokio_tungstenite::client_async(ws_url(node), MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket handshake");
        WsClient {
            stream,
            seen: Vec::new(),
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text.to_string()))
            .await
            .expect("websocket send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream
            .send(Message::binary(bytes))
            .await
            .expect("websocket send");
    }

    /// Sends `subscribe` with `fields` and returns the `subscribed` answer.
    pub async fn subscribe(&mut self, fields: Value) -> Value {
        let mut msg = json!({"type": "subscribe"});
        if let (Some(m), Some(f)) = (msg.as_object_mut(), fields.as_object()) {
            m.extend(f.clone());
        }
        self.send_json(msg).await;
        self.expect("subscribed", |m| m["type"] == "subscribed")
            .await
    }

    /// The next text message, or `None` at the deadline or when the
    /// connection ends.
    pub async fn next(&mut self, deadline: Duration) -> Option<Value> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let msg = tokio::time::timeout_at(until, self.stream.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server sent JSON");
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Waits (up to [`PUSH_DEADLINE`]) for a message matching `pred`.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(what, PUSH_DEADLINE, pred).await
    }

    pub async fn expect_within(
        &mut self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) if pred(&m) => return m,
                Some(_) => continue,
                None => panic!("no {what} within {deadline:?}; received: {:#?}", self.seen),
            }
        }
    }

    /// Waits for a stock message for (fridge, meal) with `available`.
    pub async fn expect_stock(&mut self, fridge: &str, meal: &str, available: u64) -> Value {
        self.expect(&format!("stock {fridge}/{meal} = {available}"), |m| {
            m["type"] == "stock"
                && m["fridge_id"] == fridge
                && m["meal_id"] == meal
                && m["available"] == available
        })
        .await
    }

    /// Reads until the connection ends (or `deadline`), returning how.
    pub async fn ended(&mut self, deadline: Duration) -> Option<Ended> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(until, self.stream.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Ended::Dropped),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Some(match frame {
                        Some(f) => Ended::Closed {
                            code: u16::from(f.code),
                            reason: f.reason.to_string(),
                        },
                        None => Ended::Closed {
                            code: u16::from(CloseCode::Status),
                            reason: String::new(),
                        },
                    })
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Ok(v) = serde_json::from_str(t.as_str()) {
                        self.seen.push(v);
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Messages received so far that match `pred`.
    pub fn seen_matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.seen.iter().filter(|m| pred(m)).cloned().collect()
    }
}
