//! SPDY/3.1, the part kubectl's exec speaks (1.27–1.29 always; newer ones
//! when a WebSocket upgrade is refused), as moby/spdystream frames it.
//! No maintained Rust crate speaks SPDY (browsers dropped it in 2016), so
//! this is the small subset, written here:
//!
//! - frames: SYN_STREAM in (one per stream: error, stdin, stdout, stderr,
//!   resize), SYN_REPLY out (every SYN_STREAM needs one, or kubectl waits
//!   30 s), DATA both ways (FLAG_FIN half-closes a stream), PING echoed,
//!   RST_STREAM, SETTINGS, WINDOW_UPDATE, GOAWAY and HEADERS read and
//!   ignored (spdystream keeps no flow-control windows);
//! - header blocks: one zlib stream per direction and connection, with
//!   SPDY/3's preset dictionary, flushed at each frame (every block must
//!   go through the same inflater, HEADERS included, to keep it in step).
//!
//! `Inflater`/`Deflater` and the frame functions are pure (tested below);
//! `exec` is the session over an upgraded connection.

use super::channel;
use super::process::{Running, Spec};
use crate::api::handler::Body;
use crate::api::status::ApiError;
use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
pub const FLAG_FIN: u8 = 1;

/// Frames larger than this are refused (spdystream's limit is 16 MiB,
/// the 24-bit length; nothing kubectl sends comes near).
const MAX_FRAME: usize = 1 << 24;

/// SPDY/3's header dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1):
/// length-prefixed header names and values, then a run of common text.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: [&str; 66] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
        "",
    ];
    const TEXT: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct",
        " Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8",
        "charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::new();
    for w in WORDS.iter().filter(|w| !w.is_empty()) {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TEXT.as_bytes());
    d
});

/// A frame from the peer.
#[derive(Debug, PartialEq)]
pub enum Frame {
    SynStream {
        stream: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    RstStream {
        stream: u32,
    },
    Ping(u32),
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY, NOOP…
    Other,
}

/// The reading side of a connection: frames out of bytes, header blocks
/// through the connection's inflater.
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(true))
    }
}

impl Inflater {
    /// The first frame at the start of `buf` and how many bytes it took;
    /// None when `buf` does not hold a whole frame yet.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if length > MAX_FRAME {
            return Err(format!("a SPDY frame of {length} bytes"));
        }
        if buf.len() < 8 + length {
            return Ok(None);
        }
        let flags = buf[4];
        let body = &buf[8..8 + length];
        let word = |b: &[u8], at: usize| -> Result<u32, String> {
            b.get(at..at + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) & 0x7fff_ffff)
                .ok_or_else(|| "a SPDY frame too short for its type".to_string())
        };
        let frame = if buf[0] & 0x80 == 0 {
            Frame::Data {
                stream: word(buf, 0)?,
                fin: flags & FLAG_FIN != 0,
                data: body.to_vec(),
            }
        } else {
            let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
            if version != VERSION {
                return Err(format!("SPDY version {version}, not 3"));
            }
            match u16::from_be_bytes([buf[2], buf[3]]) {
                SYN_STREAM => {
                    let stream = word(body, 0)?;
                    let block = body.get(10..).ok_or("a SYN_STREAM too short")?;
                    Frame::SynStream {
                        stream,
                        fin: flags & FLAG_FIN != 0,
                        headers: self.headers(block)?,
                    }
                }
                SYN_REPLY | HEADERS => {
                    // Not expected from a client, but their blocks are part
                    // of the zlib stream: inflate them to stay in step.
                    self.headers(body.get(4..).ok_or("a HEADERS frame too short")?)?;
                    Frame::Other
                }
                RST_STREAM => Frame::RstStream {
                    stream: word(body, 0)?,
                },
                PING => Frame::Ping(word(body, 0)?),
                GOAWAY => Frame::GoAway,
                _ => Frame::Other,
            }
        };
        Ok(Some((frame, 8 + length)))
    }

    /// A header block: inflated, then `count (name value)*`, each with a
    /// 32-bit length; a value may hold several, NUL-separated.
    fn headers(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        for round in 0.. {
            if round > 10_000 {
                return Err("a SPDY header block that does not inflate".into());
            }
            let before = self.0.total_in();
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let result = self
                .0
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.0.total_in() - before) as usize..];
            match result {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| format!("the SPDY header dictionary: {e}"))?;
                }
                Err(e) => return Err(format!("a SPDY header block: {e}")),
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) => {}
            }
            if out.len() > MAX_FRAME {
                return Err("a SPDY header block inflates past 16 MiB".into());
            }
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = out.get(at..at + n).ok_or("a SPDY header block cut short")?;
            at += n;
            Ok(s)
        };
        let number = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let count = number(take(4)?);
        let mut headers = Vec::new();
        for _ in 0..count.min(1024) {
            let n = number(take(4)?);
            let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
            let n = number(take(4)?);
            let value = String::from_utf8_lossy(take(n)?).into_owned();
            for v in value.split('\0') {
                headers.push((name.clone(), v.to_string()));
            }
        }
        Ok(headers)
    }
}

/// The writing side of a connection: header blocks through its deflater.
pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(&DICTIONARY)
            .expect("a dictionary before any data");
        Deflater(c)
    }
}

impl Deflater {
    fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut plain = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            for s in [k.to_ascii_lowercase().as_str(), v] {
                plain.extend_from_slice(&(s.len() as u32).to_be_bytes());
                plain.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = &plain[..];
        loop {
            let before = self.0.total_in();
            self.0
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("deflating to memory");
            input = &input[(self.0.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    }

    /// SYN_REPLY for `stream`.
    pub fn syn_reply(&mut self, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut body = stream.to_be_bytes().to_vec();
        body.extend(self.block(headers));
        control(SYN_REPLY, 0, &body)
    }

    /// SYN_STREAM (what a client sends; for tests and clients).
    pub fn syn_stream(&mut self, stream: u32, fin: bool, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut body = stream.to_be_bytes().to_vec();
        body.extend([0, 0, 0, 0, 0, 0]);
        body.extend(self.block(headers));
        control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &body)
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

/// A DATA frame's first 8 bytes (FIN: the sender's side of the stream
/// is done).
fn data_header(stream: u32, fin: bool, length: usize) -> [u8; 8] {
    let id = (stream & 0x7fff_ffff).to_be_bytes();
    let len = (length as u32).to_be_bytes();
    let flags = if fin { FLAG_FIN } else { 0 };
    [id[0], id[1], id[2], id[3], flags, len[1], len[2], len[3]]
}

/// A DATA frame.
pub fn data(stream: u32, fin: bool, data: &[u8]) -> Bytes {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&data_header(stream, fin, data.len()));
    f.extend_from_slice(data);
    f.into()
}

/// The answer to a PING: the same id.
pub fn ping(id: u32) -> Bytes {
    control(PING, 0, &id.to_be_bytes()).into()
}

/// GOAWAY, status OK.
pub fn goaway(last_stream: u32) -> Bytes {
    let mut body = last_stream.to_be_bytes().to_vec();
    body.extend([0, 0, 0, 0]);
    control(GOAWAY, 0, &body).into()
}

// The session: kubectl's exec over an upgraded connection.

/// The stream protocols served over SPDY, most preferred first (v5 adds
/// nothing over v4 on SPDY).
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// How long kubectl gets to open its streams (the kubelet's
/// streamCreationTimeout).
const STREAMS_WITHIN: Duration = Duration::from_secs(30);

/// Whether the request asks for SPDY/3.1.
pub fn asked(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(hyper::header::UPGRADE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("SPDY/3.1")))
}

/// Answers the upgrade (101, `X-Stream-Protocol-Version`) and runs
/// `session` on the connection once the client has it.
pub fn upgrade<F, Fut>(
    req: &mut Request<Incoming>,
    served: &[&'static str],
    session: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let protocol = super::choose(req, "x-stream-protocol-version", served)?;
    let upgrading = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrading.await {
            Ok(io) => session(hyper_util::rt::TokioIo::new(io)).await,
            Err(e) => tracing::debug!(error = %e, "api: SPDY upgrade"),
        }
    });
    Ok(Response::builder()
        .status(101)
        .header("Connection", "Upgrade")
        .header("Upgrade", "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(http_body_util::Empty::<Bytes>::new().boxed_unsync())
        .expect("a valid response"))
}

/// The stream ids kubectl opened, by `streamType`.
struct Streams {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

/// An upgraded SPDY connection as its session sees it: the frames read
/// (inflated and parsed by the carrier's reading task) and a channel of
/// frames to write (the carrier's writing task sends them in order;
/// dropping every sender ends the connection).
pub struct Connection {
    frames: mpsc::Receiver<Frame>,
    out: mpsc::Sender<Bytes>,
}

/// A connection's two ends as its carrier serves them: a [`Reader`] for
/// the bytes it reads, and the frames it must write.
pub fn carried() -> (Connection, Reader, mpsc::Receiver<Bytes>) {
    let (frames_tx, frames) = mpsc::channel::<Frame>(16);
    let (out, out_rx) = mpsc::channel::<Bytes>(16);
    let reader = Reader {
        inflater: Inflater::default(),
        buf: BytesMut::new(),
        frames: frames_tx,
    };
    (Connection { frames, out }, reader, out_rx)
}

/// Frames out of the bytes a carrier reads, in any runs.
pub struct Reader {
    inflater: Inflater,
    buf: BytesMut,
    frames: mpsc::Sender<Frame>,
}

impl Reader {
    /// Takes the bytes just read and passes on every whole frame; false
    /// when the session is gone or a frame is bad: stop reading.
    pub async fn feed(&mut self, bytes: &[u8]) -> bool {
        self.buf.extend_from_slice(bytes);
        loop {
            match self.inflater.parse(&self.buf) {
                Ok(Some((f, n))) => {
                    self.buf.advance(n);
                    if self.frames.send(f).await.is_err() {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    tracing::debug!(error = %e, "api: SPDY");
                    return false;
                }
            }
        }
    }
}

/// A connection over a byte stream: kubectl's upgraded HTTP/1.1
/// connection (a tunnelling WebSocket is `websocket::spdy`).
pub fn over<S>(io: S) -> Connection
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (connection, mut reader, mut out_rx) = carried();
    let (mut rd, mut wr) = tokio::io::split(io);
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) if !reader.feed(&chunk[..n]).await => return,
                Ok(_) => {}
            }
        }
    });
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    connection
}

/// One exec session: accept kubectl's streams, start the command, pass
/// output, stdin and resizes, and end with its exit status on the error
/// stream.
pub async fn exec<S>(
    io: S,
    spec: Spec,
    start: impl FnOnce() -> std::io::Result<Running> + Send + 'static,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Connection { mut frames, out } = over(io);
    let mut deflater = Deflater::default();
    // kubectl opens its streams first, each answered, then starts.
    let mut wanted = vec!["error"];
    for (on, name) in [
        (spec.stdin, "stdin"),
        (spec.stdout, "stdout"),
        (spec.stderr && !spec.tty, "stderr"),
        (spec.tty, "resize"),
    ] {
        if on {
            wanted.push(name);
        }
    }
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut early = Vec::new();
    let deadline = tokio::time::sleep(STREAMS_WITHIN);
    tokio::pin!(deadline);
    while !wanted.iter().all(|w| ids.contains_key(*w)) {
        tokio::select! {
            f = frames.recv() => match f {
                Some(Frame::SynStream { stream, headers, .. }) => {
                    let _ = out.send(deflater.syn_reply(stream, &[]).into()).await;
                    if let Some((_, t)) = headers.iter().find(|(k, _)| k == "streamtype") {
                        ids.insert(t.clone(), stream);
                    }
                }
                Some(Frame::Ping(id)) => {
                    let _ = out.send(ping(id)).await;
                }
                Some(f @ Frame::Data { .. }) => early.push(f),
                Some(Frame::GoAway) | None => return,
                Some(_) => {}
            },
            _ = &mut deadline => {
                tracing::debug!(?ids, "api: SPDY exec: streams not opened in time");
                return;
            }
        }
    }
    let streams = Streams {
        error: ids.get("error").copied(),
        stdin: ids.get("stdin").copied(),
        stdout: ids.get("stdout").copied(),
        stderr: ids.get("stderr").copied(),
        resize: ids.get("resize").copied(),
    };
    let error = streams.error.expect("waited for");
    let mut running = match super::started(start).await {
        Ok(r) => r,
        Err(e) => {
            let status =
                channel::failure(&format!("running {:?} in the container: {e}", spec.command));
            let _ = out
                .send(data(error, false, status.to_string().as_bytes()))
                .await;
            let _ = out.send(data(error, true, &[])).await;
            return;
        }
    };
    let mut stdin = running.stdin.take();
    let mut resizes = Vec::new();
    let mut gone = false;
    for f in early {
        take(f, &streams, &running, &mut stdin, &mut resizes);
    }
    loop {
        // A command that does not read its stdin holds the client back.
        let full = stdin.as_ref().is_some_and(super::process::Stdin::full);
        tokio::select! {
            chunk = running.output.recv() => match chunk {
                Some((ch, bytes)) => {
                    let to = if ch == channel::STDERR { streams.stderr } else { streams.stdout };
                    if let Some(to) = to {
                        if out.send(data(to, false, &bytes)).await.is_err() {
                            gone = true;
                            break;
                        }
                    }
                }
                None => break,
            },
            _ = super::process::room(&mut stdin), if full => {}
            f = frames.recv(), if !full => match f {
                Some(Frame::Ping(id)) => {
                    let _ = out.send(ping(id)).await;
                }
                Some(Frame::GoAway) | None => {
                    gone = true;
                    break;
                }
                Some(f) => take(f, &streams, &running, &mut stdin, &mut resizes),
            },
        }
    }
    drop(stdin);
    if gone {
        running.abandon().await;
        return;
    }
    for s in [streams.stdout, streams.stderr].into_iter().flatten() {
        let _ = out.send(data(s, true, &[])).await;
    }
    let code = running.exit.await.unwrap_or(1);
    let status = channel::exit_status(code, &spec.command);
    let _ = out
        .send(data(error, false, status.to_string().as_bytes()))
        .await;
    let _ = out.send(data(error, true, &[])).await;
    // kubectl reads the status and closes; answer its pings until then.
    let linger = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(linger);
    loop {
        tokio::select! {
            f = frames.recv() => match f {
                Some(Frame::Ping(id)) => {
                    let _ = out.send(ping(id)).await;
                }
                Some(Frame::GoAway) | None => break,
                Some(_) => {}
            },
            _ = &mut linger => break,
        }
    }
    let _ = out.send(goaway(0)).await;
}

/// A frame from kubectl during the session: stdin bytes (FIN closes the
/// command's stdin), terminal sizes (JSON objects, one after another).
fn take(
    f: Frame,
    streams: &Streams,
    running: &Running,
    stdin: &mut Option<super::process::Stdin>,
    resizes: &mut Vec<u8>,
) {
    match f {
        Frame::Data { stream, fin, data } if Some(stream) == streams.stdin => {
            if let Some(s) = stdin.as_mut().filter(|_| !data.is_empty()) {
                s.send(data);
            }
            if fin {
                *stdin = None;
            }
        }
        Frame::RstStream { stream } if Some(stream) == streams.stdin => *stdin = None,
        Frame::Data { stream, data, .. } if Some(stream) == streams.resize => {
            resizes.extend_from_slice(&data);
            let mut sizes =
                serde_json::Deserializer::from_slice(resizes).into_iter::<serde_json::Value>();
            let mut used = 0;
            while let Some(Ok(v)) = sizes.next() {
                used = sizes.byte_offset();
                let dim = |k: &str| v[k].as_u64().map(|n| n.min(u16::MAX as u64) as u16);
                if let (Some(w), Some(h)) = (dim("Width"), dim("Height")) {
                    running.resize(w, h);
                }
            }
            resizes.drain(..used);
        }
        _ => {}
    }
}

/// The protocol of `pods/portforward` over SPDY.
pub const PORT_FORWARD: &str = "portforward.k8s.io";

/// One port-forward session: for each connection kubectl accepts on its
/// side, it opens an error stream and a data stream (same `requestID`
/// and `port`); each pair becomes a TCP connection to that port on the
/// pod's loopback, inside `netns`, bytes copied both ways, half-closes
/// passed on. A port nobody listens on gets the kubelet's message on the
/// error stream.
pub async fn port_forward(connection: Connection, netns: String, pod: String) {
    #[derive(Default)]
    struct Pair {
        error: Option<u32>,
        data: Option<u32>,
        port: u16,
    }
    let Connection { mut frames, out } = connection;
    let mut deflater = Deflater::default();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Bounded, as spdystream's per-stream channel is in the kubelet: a pod
    // that reads slower than the client sends holds the session back
    // rather than growing the lab's memory.
    let mut to_pods: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    while let Some(f) = frames.recv().await {
        match f {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let _ = out.send(deflater.syn_reply(stream, &[]).into()).await;
                let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let request = get("requestid").unwrap_or_else(|| stream.to_string());
                let pair = pairs.entry(request.clone()).or_default();
                pair.port = get("port").and_then(|p| p.parse().ok()).unwrap_or(0);
                match get("streamtype").as_deref() {
                    Some("error") => pair.error = Some(stream),
                    Some("data") => pair.data = Some(stream),
                    _ => {}
                }
                if let (Some(error), Some(data)) = (pair.error, pair.data) {
                    let port = pair.port;
                    pairs.remove(&request);
                    let (tx, rx) = mpsc::channel(TO_POD_FRAMES);
                    to_pods.insert(data, tx);
                    let (out, netns, pod) = (out.clone(), netns.clone(), pod.clone());
                    tokio::spawn(forward(out, netns, pod, port, error, data, rx));
                }
            }
            Frame::Data { stream, fin, data } => {
                if let Some(tx) = to_pods.get(&stream) {
                    if !data.is_empty() {
                        let _ = tx.send(Some(data)).await;
                    }
                    if fin {
                        let _ = tx.send(None).await;
                        to_pods.remove(&stream);
                    }
                }
            }
            Frame::RstStream { stream } => {
                to_pods.remove(&stream);
            }
            Frame::Ping(id) => {
                let _ = out.send(ping(id)).await;
            }
            Frame::GoAway => break,
            Frame::Other => {}
        }
    }
}

/// Data frames from the client held for one forwarded connection.
const TO_POD_FRAMES: usize = 64;

/// The most a forwarded connection reads from the pod into one frame.
const FORWARD_READ: usize = 256 * 1024;

/// One forwarded connection.
async fn forward(
    out: mpsc::Sender<Bytes>,
    netns: String,
    pod: String,
    port: u16,
    error: u32,
    data_id: u32,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let dialed = tokio::task::spawn_blocking(move || {
        crate::net::NetNs::open(&netns)
            .and_then(|ns| ns.connect_tcp(addr, Duration::from_secs(5)))
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let tcp = match dialed
        .and_then(|s| tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            let message = format!("error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the pod's network namespace: {e}");
            let _ = out.send(data(error, false, message.as_bytes())).await;
            let _ = out.send(data(error, true, &[])).await;
            let _ = out.send(data(data_id, true, &[])).await;
            return;
        }
    };
    let (mut r, mut w) = tcp.into_split();
    let to_client = {
        let out = out.clone();
        tokio::spawn(async move {
            // Each read lands behind room for its frame's header: the
            // frame goes out without another copy.
            let mut buf = BytesMut::new();
            loop {
                buf.reserve(8 + FORWARD_READ);
                buf.put_bytes(0, 8);
                match r.read_buf(&mut (&mut buf).limit(FORWARD_READ)).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf[..8].copy_from_slice(&data_header(data_id, false, n));
                        if out.send(buf.split().freeze()).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = out.send(data(data_id, true, &[])).await;
        })
    };
    while let Some(chunk) = from_client.recv().await {
        match chunk {
            Some(bytes) => {
                if w.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            None => break,
        }
    }
    let _ = w.shutdown().await;
    let _ = to_client.await;
    let _ = out.send(data(error, true, &[])).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        // 1423 bytes, starting with `\0\0\0\x07options` and ending `enq=0.`.
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b"enq=0."));
    }

    #[test]
    fn syn_streams_through_one_zlib_stream() {
        let (mut client, mut server) = (Deflater::default(), Inflater::default());
        let mut wire = client.syn_stream(1, false, &[("streamType", "error")]);
        wire.extend(client.syn_stream(3, true, &[("streamtype", "stdout"), ("x", "a\0b")]));
        wire.extend(data(3, true, b"hi"));
        let (f, n) = server.parse(&wire).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::SynStream {
                stream: 1,
                fin: false,
                headers: vec![("streamtype".into(), "error".into())]
            }
        );
        // Cut short: not yet a frame.
        assert_eq!(server.parse(&wire[n..n + 9]).unwrap(), None);
        let (f, m) = server.parse(&wire[n..]).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::SynStream {
                stream: 3,
                fin: true,
                headers: vec![
                    ("streamtype".into(), "stdout".into()),
                    ("x".into(), "a".into()),
                    ("x".into(), "b".into())
                ]
            }
        );
        let (f, _) = server.parse(&wire[n + m..]).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Data {
                stream: 3,
                fin: true,
                data: b"hi".to_vec()
            }
        );
    }

    #[test]
    fn replies_pings_and_goaway() {
        let mut d = Deflater::default();
        let reply = d.syn_reply(5, &[]);
        assert_eq!(&reply[..4], &[0x80, 3, 0, 2]);
        assert_eq!(&reply[8..12], &[0, 0, 0, 5]);
        // A reply parses on the other side (its block is inflated).
        assert_eq!(
            Inflater::default().parse(&reply).unwrap().unwrap().0,
            Frame::Other
        );
        assert_eq!(
            Inflater::default().parse(&ping(7)).unwrap().unwrap(),
            (Frame::Ping(7), 12)
        );
        assert_eq!(
            Inflater::default().parse(&goaway(3)).unwrap().unwrap().0,
            Frame::GoAway
        );
        assert!(Inflater::default()
            .parse(&[0x80, 2, 0, 1, 0, 0, 0, 0])
            .is_err());
    }

    /// A WebSocket carries the byte stream in runs of any length: frames
    /// split across runs, or several in one, come out whole and in order.
    #[tokio::test]
    async fn frames_come_whole_from_any_runs_of_bytes() {
        let mut wire = Vec::new();
        wire.extend(data(3, false, b"hello"));
        wire.extend(ping(9));
        wire.extend(data(3, true, b""));
        let want = [
            Frame::Data {
                stream: 3,
                fin: false,
                data: b"hello".to_vec(),
            },
            Frame::Ping(9),
            Frame::Data {
                stream: 3,
                fin: true,
                data: Vec::new(),
            },
        ];
        for run in [1, 5, 13, wire.len()] {
            let (mut c, mut reader, _out) = carried();
            for piece in wire.chunks(run) {
                assert!(reader.feed(piece).await);
            }
            drop(reader);
            let mut got = Vec::new();
            while let Some(f) = c.frames.recv().await {
                got.push(f);
            }
            assert_eq!(got, want, "runs of {run} bytes");
        }
        // A frame of another SPDY version ends the connection.
        let (_c, mut reader, _out) = carried();
        assert!(!reader.feed(&[0x80, 2, 0, 1, 0, 0, 0, 0]).await);
    }
}
