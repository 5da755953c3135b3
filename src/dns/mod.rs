//! The `dns` layer: the cluster DNS server (a kube-dns twin), built on
//! hickory's server. The lab's controller runs it inside each `coredns` pod's
//! network namespace (its sockets are opened there and served from the
//! controller's runtime, see [`Server::serve_in`]), so it answers on the pod
//! IP, behind the `kube-dns` Service's 10.0.0.10 like the real thing, and
//! never on the host.
//!
//! * [`zone`]: the records (pure), rebuilt from the object store;
//! * here: [`respond`], the answer to one query (from the zone, NXDOMAIN/
//!   NODATA with the SOA, names outside the cluster domain refused at once
//!   or forwarded to the Lab's upstreams), and [`Server`], the serving of
//!   one pod: UDP on a thread of its own, TCP as tokio tasks.
//!
//! The messages are hickory-proto's (parsing and encoding). The serving
//! loop is ours, not hickory-server's: hickory-server receives each UDP
//! query in one task, answers it in another it spawns, and sends the answer
//! back through a channel to the first, so every query wakes threads across
//! the runtime. Profiled under load (`cargo bench --bench dns`), the lab
//! process spent its time in task switches and wake-ups, not in DNS; a
//! receive-answer-send loop on one thread, as dnsmasq does it, answers
//! without any (see the README's benchmark figures).

pub mod zone;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::NetNs;
pub use zone::{Answer, Zone};

/// The port kube-dns answers on.
pub const PORT: u16 = 53;
/// How long a forwarded query may take before the client gets SERVFAIL.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// The zone every server of a lab answers from; swapped whole on changes.
#[derive(Clone)]
pub struct SharedZone(Arc<RwLock<Arc<Zone>>>);

impl SharedZone {
    pub fn new(zone: Zone) -> SharedZone {
        SharedZone(Arc::new(RwLock::new(Arc::new(zone))))
    }
    pub fn get(&self) -> Arc<Zone> {
        self.0.read().expect("zone lock").clone()
    }
    pub fn set(&self, zone: Zone) {
        *self.0.write().expect("zone lock") = Arc::new(zone);
    }
}

/// The largest UDP answer to a query with EDNS (the 2020 DNS flag day's
/// 1232 bytes); without EDNS, 512.
const EDNS_PAYLOAD: u16 = 1232;

/// What to do with one query.
#[derive(Debug)]
pub enum Reply {
    /// Send these bytes back.
    Send(Vec<u8>),
    /// A name outside the cluster: ask the upstreams ([`forwarded`]).
    Forward(Message),
    /// Not even a header to answer to.
    Ignore,
}

fn encode(m: &Message, limit: usize) -> Reply {
    match m.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Reply::Send(bytes),
        // Too large for UDP: the header and question, truncated (TC), and
        // the client asks again over TCP.
        Ok(_) => m.truncate().to_vec().map_or(Reply::Ignore, Reply::Send),
        Err(e) => {
            tracing::debug!(error = %e, "encoding a DNS answer failed");
            Reply::Ignore
        }
    }
}

/// An error answer to a message whose header could be read.
fn failure(raw: &[u8], code: ResponseCode) -> Reply {
    if raw.len() < 12 {
        return Reply::Ignore;
    }
    let id = u16::from_be_bytes([raw[0], raw[1]]);
    let op = OpCode::from_u8((raw[2] >> 3) & 0xf);
    encode(&Message::error_msg(id, op, code), usize::MAX)
}

/// The empty response to `req` (its id, question and flags; EDNS if it
/// has EDNS), and the size its encoding may take.
fn response_to(req: &Message, udp: bool) -> (Message, usize) {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.queries = req.queries.clone();
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        resp.set_edns(e);
    }
    let limit = if udp {
        req.max_payload().min(EDNS_PAYLOAD) as usize
    } else {
        u16::MAX as usize
    };
    (resp, limit)
}

/// The answer to one query message `raw` from `zone` (pure). `forwards`:
/// the lab has upstreams for names outside the cluster (else they are
/// refused); `udp`: the answer must fit the client's payload size.
pub fn respond(zone: &Zone, forwards: bool, raw: &[u8], udp: bool) -> Reply {
    let Ok(req) = Message::from_vec(raw) else {
        return failure(raw, ResponseCode::FormErr);
    };
    let (mut resp, limit) = response_to(&req, udp);
    let fail = |mut resp: Message, code: ResponseCode| {
        resp.metadata.response_code = code;
        encode(&resp, limit)
    };
    if req.metadata.message_type != MessageType::Query || req.queries.len() != 1 {
        return fail(resp, ResponseCode::FormErr);
    }
    if req.metadata.op_code != OpCode::Query {
        return fail(resp, ResponseCode::NotImp);
    }
    let query = &req.queries[0];
    let qtype = query.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return fail(resp, ResponseCode::Refused);
    }
    resp.metadata.authoritative = true;
    match zone.lookup(&LowerName::from(query.name()), qtype) {
        Answer::Records {
            answers,
            additionals,
        } => {
            resp.answers = answers;
            resp.additionals = additionals;
        }
        negative @ (Answer::NoData | Answer::NxDomain) => {
            if negative == Answer::NxDomain {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
            resp.authorities.push(zone.soa().clone());
        }
        Answer::NotOurs if forwards => return Reply::Forward(req),
        Answer::NotOurs => {
            resp.metadata.authoritative = false;
            return fail(resp, ResponseCode::Refused);
        }
    }
    encode(&resp, limit)
}

/// Asks the upstreams in turn (from the lab process's own network
/// namespace, the host's) for `req`, and returns the answer to send back:
/// theirs, under the request's id, or SERVFAIL when none answered.
pub async fn forwarded(upstreams: &[SocketAddr], req: &Message, udp: bool) -> Reply {
    let (mut resp, limit) = response_to(req, udp);
    match ask_upstreams(upstreams, req).await {
        Some(m) => {
            resp.metadata.recursion_available = m.metadata.recursion_available;
            resp.metadata.response_code = m.metadata.response_code;
            resp.answers = m.answers;
            resp.authorities = m.authorities;
            resp.additionals = m.additionals;
        }
        None => resp.metadata.response_code = ResponseCode::ServFail,
    }
    encode(&resp, limit)
}

async fn ask_upstreams(upstreams: &[SocketAddr], req: &Message) -> Option<Message> {
    let raw = req.to_vec().ok()?;
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.send_to(&raw, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(FORWARD_TIMEOUT, sock.recv_from(&mut buf)).await
        {
            if let Ok(m) = Message::from_vec(&buf[..n]) {
                return Some(m);
            }
        }
    }
    None
}

/// What a pod's DNS server answers from.
#[derive(Clone)]
pub struct Handler {
    zone: SharedZone,
    upstreams: Arc<Vec<SocketAddr>>,
}

impl Handler {
    pub fn new(zone: SharedZone, upstreams: Vec<SocketAddr>) -> Handler {
        Handler {
            zone,
            upstreams: Arc::new(upstreams),
        }
    }

    fn respond(&self, raw: &[u8], udp: bool) -> Reply {
        respond(&self.zone.get(), !self.upstreams.is_empty(), raw, udp)
    }
}

/// The answers a UDP thread gave under one zone, by the query's bytes but
/// its id: [`respond`] is a pure function of the zone and those bytes, and
/// echoes the id alone, so an answer given once is given again with the
/// new id patched in, without parsing or encoding. Emptied when the zone
/// changes, and when full (queries for ever new names).
struct Answers {
    zone: Arc<Zone>,
    by_query: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

/// Queries an [`Answers`] keeps at most.
const ANSWERS_KEPT: usize = 4096;

impl Answers {
    fn respond(&mut self, handler: &Handler, raw: &[u8]) -> Reply {
        let zone = handler.zone.get();
        if !Arc::ptr_eq(&zone, &self.zone) {
            self.zone = zone.clone();
            self.by_query.clear();
        }
        if raw.len() < 12 {
            return Reply::Ignore;
        }
        if let Some(known) = self.by_query.get(&raw[2..]) {
            let mut out = known.clone();
            out[..2].copy_from_slice(&raw[..2]);
            return Reply::Send(out);
        }
        let reply = respond(&zone, !handler.upstreams.is_empty(), raw, true);
        if let Reply::Send(bytes) = &reply {
            if self.by_query.len() >= ANSWERS_KEPT {
                self.by_query.clear();
            }
            self.by_query.insert(raw[2..].to_vec(), bytes.clone());
        }
        reply
    }
}

/// One pod's DNS server: UDP and TCP on the pod's IP, port 53.
pub struct Server {
    stop: Arc<AtomicBool>,
    udp: Vec<std::thread::JoinHandle<()>>,
    tcp: tokio::task::JoinHandle<()>,
}

/// Threads receiving on the UDP socket.
const UDP_THREADS: usize = 2;
/// How often the UDP thread looks whether it is to stop.
const UDP_POLL: Duration = Duration::from_millis(100);

impl Server {
    /// Opens the sockets inside `netns` (a socket stays in the namespace it
    /// was created in) and serves them: UDP on a thread of its own, TCP on
    /// the current tokio runtime (which also forwards what is not ours).
    pub fn serve_in(netns: &NetNs, ip: Ipv4Addr, handler: Handler) -> Result<Server, String> {
        let addr = SocketAddr::from((ip, PORT));
        let (udp, tcp) = netns
            .run(|| -> std::io::Result<_> {
                let udp = std::net::UdpSocket::bind(addr)?;
                udp.set_read_timeout(Some(UDP_POLL))?;
                let tcp = std::net::TcpListener::bind(addr)?;
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp))
            })
            .map_err(|e| format!("entering {}: {e}", netns.name()))?
            .map_err(|e| format!("binding {addr} in {}: {e}", netns.name()))?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let udp = Arc::new(udp);
        let mut threads = Vec::new();
        for _ in 0..UDP_THREADS {
            let (udp, stop, handler, runtime) =
                (udp.clone(), stop.clone(), handler.clone(), runtime.clone());
            let t = std::thread::Builder::new()
                .name(format!("dns-{ip}"))
                .spawn(move || serve_udp(udp, handler, stop, runtime))
                .map_err(|e| format!("starting the DNS thread for {addr}: {e}"))?;
            threads.push(t);
        }
        let tcp = tokio::spawn(serve_tcp(tcp, handler));
        Ok(Server {
            stop,
            udp: threads,
            tcp,
        })
    }

    /// Stops serving; the sockets are closed when this returns.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tcp.abort();
        let threads = std::mem::take(&mut self.udp);
        let _ =
            tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())))
                .await;
    }
}

/// Receive, answer, send, on one thread: no task, no wake-up of another
/// thread per query. Only a forwarded query goes to the runtime.
fn serve_udp(
    sock: Arc<std::net::UdpSocket>,
    handler: Handler,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) {
    let mut buf = [0u8; 4096];
    let mut answers = Answers {
        zone: handler.zone.get(),
        by_query: Default::default(),
    };
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP errors of earlier answers surface here; keep on,
                // without spinning should an error persist.
                tracing::debug!(error = %e, "DNS: receiving");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        match answers.respond(&handler, &buf[..n]) {
            Reply::Send(bytes) => {
                let _ = sock.send_to(&bytes, from);
            }
            Reply::Forward(req) => {
                let (sock, upstreams) = (sock.clone(), handler.upstreams.clone());
                runtime.spawn(async move {
                    if let Reply::Send(bytes) = forwarded(&upstreams, &req, true).await {
                        let _ = sock.send_to(&bytes, from);
                    }
                });
            }
            Reply::Ignore => {}
        }
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(serve_tcp_client(stream, handler.clone()));
    }
}

/// One TCP client: length-prefixed queries and answers (RFC 1035 4.2.2),
/// until it closes or is idle for [`TCP_IDLE`].
async fn serve_tcp_client(mut stream: tokio::net::TcpStream, handler: Handler) {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut raw = vec![0u8; u16::from_be_bytes(len) as usize];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut raw)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let reply = match handler.respond(&raw, false) {
            Reply::Forward(req) => forwarded(&handler.upstreams, &req, false).await,
            r => r,
        };
        let Reply::Send(bytes) = reply else { continue };
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn zone() -> Zone {
        Zone::empty(
            "10.0.0.0/16".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
        )
    }

    fn ask(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    fn answer(r: Reply) -> Message {
        match r {
            Reply::Send(b) => Message::from_vec(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_negatives_errors_and_forwards() {
        let z = zone();
        // A name of the zone that does not exist: NXDOMAIN with the SOA.
        let m = answer(respond(
            &z,
            false,
            &ask("nope.cluster.local.", RecordType::A, true),
            true,
        ));
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
        // The origin exists without an A: NODATA.
        let m = answer(respond(
            &z,
            false,
            &ask("cluster.local.", RecordType::A, false),
            true,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty() && m.edns.is_none());
        // Outside the cluster: refused, or forwarded when there are upstreams.
        let q = ask("example.org.", RecordType::A, false);
        let m = answer(respond(&z, false, &q, true));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(matches!(respond(&z, true, &q, true), Reply::Forward(_)));
        // Zone transfers are refused; garbage after a header is FORMERR.
        let m = answer(respond(
            &z,
            false,
            &ask("cluster.local.", RecordType::AXFR, false),
            false,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let mut junk = q.clone();
        junk.truncate(14);
        let m = answer(respond(&z, false, &junk, true));
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (7, ResponseCode::FormErr)
        );
        assert!(matches!(
            respond(&z, false, &[1, 2, 3], true),
            Reply::Ignore
        ));
    }

    #[test]
    fn a_known_query_is_answered_again_under_its_new_id_until_the_zone_changes() {
        let shared = SharedZone::new(zone());
        let handler = Handler::new(shared.clone(), Vec::new());
        let mut answers = Answers {
            zone: shared.get(),
            by_query: Default::default(),
        };
        let mut q = ask("nope.cluster.local.", RecordType::A, true);
        let first = answer(answers.respond(&handler, &q));
        q[..2].copy_from_slice(&99u16.to_be_bytes());
        let again = answers.respond(&handler, &q);
        let Reply::Send(bytes) = &again else {
            panic!("{again:?}")
        };
        assert_eq!(answers.by_query.len(), 1, "answered from what it kept");
        let Reply::Send(fresh) = respond(&shared.get(), false, &q, true) else {
            panic!()
        };
        assert_eq!(bytes, &fresh, "the same bytes as a fresh answer");
        assert_eq!(answer(again).metadata.id, 99);
        assert_eq!(first.metadata.response_code, ResponseCode::NXDomain);
        // A new zone: nothing kept is used.
        let mut z = zone();
        z.add_for_test(hickory_proto::rr::Record::from_rdata(
            Name::from_ascii("nope.cluster.local.").unwrap(),
            5,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(10, 0, 0, 9))),
        ));
        shared.set(z);
        let m = answer(answers.respond(&handler, &q));
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn a_large_udp_answer_is_truncated_and_whole_over_tcp() {
        let mut z = zone();
        for i in 0..60u8 {
            z.add_for_test(hickory_proto::rr::Record::from_rdata(
                Name::from_ascii("many.cluster.local.").unwrap(),
                5,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(
                    10, 244, 0, i,
                ))),
            ));
        }
        let q = ask("many.cluster.local.", RecordType::A, false);
        let m = answer(respond(&z, false, &q, true));
        assert!(m.metadata.truncation && m.answers.is_empty());
        let m = answer(respond(&z, false, &q, false));
        assert_eq!(m.answers.len(), 60);
    }
}
