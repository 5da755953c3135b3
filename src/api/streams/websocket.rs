//! The channel protocol (`channel.rs`) over a WebSocket: the upgrade
//! (kubectl 1.30+ and kube-rs ask for it with a GET) and one exec session;
//! and SPDY carried in a WebSocket ([`spdy`]), as kubectl 1.31+'s
//! port-forward speaks it.

use super::channel::{self, FromClient};
use super::process::Running;
use crate::api::handler::Body;
use crate::api::status::ApiError;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Whether the request asks for a WebSocket.
pub fn asked(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(hyper::header::UPGRADE)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.eq_ignore_ascii_case("websocket"))
        })
}

/// Answers the upgrade (101 with the first of `served` the client
/// offers) and runs `session` on the socket once the client has it.
pub fn upgrade<F, Fut>(
    req: &mut Request<Incoming>,
    served: &[&'static str],
    session: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let h = req.headers();
    let key = h
        .get("sec-websocket-key")
        .ok_or_else(|| ApiError::bad_request("a WebSocket upgrade without Sec-WebSocket-Key"))?;
    let protocol = super::choose(req, "sec-websocket-protocol", served)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrading = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrading.await {
            Ok(io) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
                session(ws).await;
            }
            Err(e) => tracing::debug!(error = %e, "api: WebSocket upgrade"),
        }
    });
    Ok(Response::builder()
        .status(101)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Accept", accept)
        .header("Sec-WebSocket-Protocol", protocol)
        .body(http_body_util::Empty::<Bytes>::new().boxed_unsync())
        .expect("a valid response"))
}

fn binary(channel: u8, data: &[u8]) -> Message {
    Message::Binary(channel::frame(channel, data).into())
}

/// One exec session: the command's output out, the client's stdin and
/// resizes in, and at the end its exit status on the error channel.
pub async fn exec(ws: Socket, started: std::io::Result<Running>, command: Vec<String>) {
    let (mut sink, mut source) = ws.split();
    let mut running = match started {
        Ok(r) => r,
        Err(e) => {
            let status = channel::failure(&format!("running {command:?} in the container: {e}"));
            let _ = sink
                .send(binary(channel::ERROR, status.to_string().as_bytes()))
                .await;
            let _ = sink.close().await;
            return;
        }
    };
    // As the kubelet does: an empty frame tells the client the stream is up.
    let mut gone = sink.send(binary(channel::STDOUT, b"")).await.is_err();
    let mut stdin = running.stdin.take();
    while !gone {
        // A command that does not read its stdin holds the client back.
        let full = stdin.as_ref().is_some_and(super::process::Stdin::full);
        tokio::select! {
            chunk = running.output.recv() => match chunk {
                Some((ch, data)) => gone = sink.send(binary(ch, &data)).await.is_err(),
                None => break,
            },
            _ = super::process::room(&mut stdin), if full => {}
            msg = source.next(), if !full => match msg {
                Some(Ok(Message::Binary(b))) => match channel::parse(&b) {
                    FromClient::Stdin(data) => {
                        if let Some(s) = &mut stdin {
                            s.send(data.to_vec());
                        }
                    }
                    FromClient::Resize { width, height } => running.resize(width, height),
                    FromClient::CloseStdin => stdin = None,
                    FromClient::Nothing => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => gone = true,
                Some(Ok(_)) => {} // pings are answered by the socket itself
            },
        }
    }
    drop(stdin);
    if gone {
        running.abandon().await;
        return;
    }
    let code = running.exit.await.unwrap_or(1);
    let status = channel::exit_status(code, &command);
    let _ = sink
        .send(binary(channel::ERROR, status.to_string().as_bytes()))
        .await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// The subprotocol of kubectl 1.31+'s port-forward: SPDY/3.1 carried in
/// the WebSocket's binary messages (client-go's `TunnelingConnection`:
/// each message is a run of the byte stream, no channel byte).
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// A SPDY connection carried in a WebSocket's binary messages: what the
/// client sends is read as one byte stream, each frame written goes out
/// as one message; a close (or the client going) ends it.
pub fn spdy(ws: Socket) -> super::spdy::Connection {
    let (connection, mut reader, mut frames) = super::spdy::carried();
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(b) if !reader.feed(&b).await => break,
                Message::Close(_) => break,
                _ => {} // pings are answered by the socket itself
            }
        }
    });
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            // Frames already waiting go out in the same flush.
            if sink.feed(Message::Binary(frame)).await.is_err() {
                return;
            }
            if frames.is_empty() && sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    connection
}
