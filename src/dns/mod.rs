//! The `dns` layer: the cluster DNS server (a kube-dns twin), built on
//! hickory's server. The lab's controller runs it inside each `coredns` pod's
//! network namespace (its sockets are opened there and served from the
//! controller's runtime, see [`Server::serve_in`]), so it answers on the pod
//! IP, behind the `kube-dns` Service's 10.0.0.10 like the real thing, and
//! never on the host.
//!
//! * [`zone`]: the records (pure), rebuilt from the object store;
//! * here: the request handler (answers from the zone, NXDOMAIN/NODATA with
//!   the SOA, names outside the cluster domain refused at once or forwarded
//!   to the Lab's upstreams) and the serving of one pod.

pub mod zone;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

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

/// Answers queries from the zone.
pub struct Handler {
    zone: SharedZone,
    upstreams: Vec<SocketAddr>,
}

impl Handler {
    pub fn new(zone: SharedZone, upstreams: Vec<SocketAddr>) -> Handler {
        Handler { zone, upstreams }
    }

    /// Asks the upstreams in turn (from the controller's own network
    /// namespace, the host's) and returns the first answer.
    async fn forward(&self, raw: &[u8]) -> Option<Message> {
        for up in &self.upstreams {
            let bind: SocketAddr = if up.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.send_to(raw, up).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 65535];
            match tokio::time::timeout(FORWARD_TIMEOUT, sock.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => {
                    if let Ok(m) = Message::from_vec(&buf[..n]) {
                        return Some(m);
                    }
                }
                _ => continue,
            }
        }
        None
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let req_meta = request.metadata;
        let mut edns = None;
        if request.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            edns = Some(e);
        }
        let builder = || {
            let mut b = MessageResponseBuilder::from_message_request(request);
            if let Some(e) = &edns {
                b.edns(e);
            }
            b
        };
        let fail = |code: ResponseCode| builder().error_msg(&req_meta, code);
        if req_meta.message_type != MessageType::Query {
            return send(&mut response_handle, fail(ResponseCode::FormErr), &req_meta).await;
        }
        if req_meta.op_code != OpCode::Query {
            return send(&mut response_handle, fail(ResponseCode::NotImp), &req_meta).await;
        }
        let Ok(info) = request.request_info() else {
            return send(&mut response_handle, fail(ResponseCode::FormErr), &req_meta).await;
        };
        let qname = info.query.name().clone();
        let qtype = info.query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return send(&mut response_handle, fail(ResponseCode::Refused), &req_meta).await;
        }
        let zone = self.zone.get();
        let mut meta = Metadata::response_from_request(&req_meta);
        meta.authoritative = true;
        let soa = [zone.soa().clone()];
        match zone.lookup(&qname, qtype) {
            Answer::Records {
                answers,
                additionals,
            } => {
                let r = builder().build(
                    meta,
                    answers.iter(),
                    std::iter::empty(),
                    std::iter::empty(),
                    additionals.iter(),
                );
                send(&mut response_handle, r, &req_meta).await
            }
            negative @ (Answer::NoData | Answer::NxDomain) => {
                if negative == Answer::NxDomain {
                    meta.response_code = ResponseCode::NXDomain;
                }
                let r = builder().build(
                    meta,
                    std::iter::empty(),
                    std::iter::empty(),
                    soa.iter(),
                    std::iter::empty(),
                );
                send(&mut response_handle, r, &req_meta).await
            }
            Answer::NotOurs if !self.upstreams.is_empty() => {
                match self.forward(request.as_slice()).await {
                    Some(m) => {
                        let mut meta = Metadata::response_from_request(&req_meta);
                        meta.recursion_available = m.metadata.recursion_available;
                        meta.response_code = m.metadata.response_code;
                        let records: [Vec<Record>; 3] = [
                            m.answers.clone(),
                            m.authorities.clone(),
                            m.additionals.clone(),
                        ];
                        let r = builder().build(
                            meta,
                            records[0].iter(),
                            records[1].iter(),
                            std::iter::empty(),
                            records[2].iter(),
                        );
                        send(&mut response_handle, r, &req_meta).await
                    }
                    None => {
                        send(
                            &mut response_handle,
                            fail(ResponseCode::ServFail),
                            &req_meta,
                        )
                        .await
                    }
                }
            }
            Answer::NotOurs => {
                send(&mut response_handle, fail(ResponseCode::Refused), &req_meta).await
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    req: &Metadata,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS response failed");
            let mut meta = Metadata::response_from_request(req);
            meta.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata: meta,
                counts: Default::default(),
            }
            .into()
        }
    }
}

/// One pod's DNS server: UDP and TCP on the pod's IP, port 53.
pub struct Server {
    inner: hickory_server::Server<Handler>,
}

impl Server {
    /// Opens the sockets inside `netns` (a socket stays in the namespace it
    /// was created in) and serves them on the current tokio runtime.
    pub fn serve_in(netns: &NetNs, ip: Ipv4Addr, handler: Handler) -> Result<Server, String> {
        let addr = SocketAddr::from((ip, PORT));
        let (udp, tcp) = netns
            .run(|| -> std::io::Result<_> {
                let udp = std::net::UdpSocket::bind(addr)?;
                udp.set_nonblocking(true)?;
                let tcp = std::net::TcpListener::bind(addr)?;
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp))
            })
            .map_err(|e| format!("entering {}: {e}", netns.name()))?
            .map_err(|e| format!("binding {addr} in {}: {e}", netns.name()))?;
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| e.to_string())?;
        let mut inner = hickory_server::Server::new(handler);
        inner.register_socket(udp);
        inner.register_listener(tcp, TCP_IDLE, 64);
        Ok(Server { inner })
    }

    pub async fn stop(mut self) {
        let _ = self.inner.shutdown_gracefully().await;
    }
}
