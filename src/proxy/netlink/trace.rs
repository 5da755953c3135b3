//! nf_tables trace events: what `nft monitor trace` prints, read from the
//! `NFNLGRP_NFTRACE` multicast group of one network namespace.
//!
//! The kernel sends one event per rule that matches a packet marked with
//! `meta nftrace set 1` (and one per chain it returns from, or whose policy
//! decides), each with the table, chain and verdict; the first event of a
//! packet in each hook also carries its network and transport headers, so
//! that the address a DNAT chose shows in the headers of the hooks after it.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use crate::net::NetNs;

const NFNLGRP_NFTRACE: libc::c_int = 9;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE`
const MSG_TRACE: u16 = (10 << 8) | 17;

/// What one event says a rule, a return or a policy did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
    /// The rule matched and the chain goes on (a DNAT, a mark).
    Continue,
    Jump(String),
    Goto(String),
    Return,
    Other(i32),
}

/// One trace event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// The packet's trace id (the same for its events in one hook).
    pub id: u32,
    pub table: String,
    pub chain: String,
    /// `rule`, `return` or `policy`.
    pub kind: &'static str,
    pub verdict: Option<Verdict>,
    /// The rule's handle in its chain (`rule` events).
    pub handle: Option<u64>,
    /// The packet's addresses and ports, when the event carries them.
    pub packet: Option<Packet>,
}

/// An IPv4 packet's addresses, protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Packet {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// A socket subscribed to one namespace's trace events.
pub struct Tracer {
    sock: OwnedFd,
}

impl Tracer {
    /// Subscribes in `ns` (the socket belongs to the namespace it was
    /// opened in).
    pub fn open(ns: &NetNs) -> io::Result<Tracer> {
        let fd = super::netfilter_socket(ns, libc::SOCK_NONBLOCK).map_err(io::Error::other)?;
        // SAFETY: an all-zero sockaddr_nl is valid; bind reads it.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: bind reads a sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let group = NFNLGRP_NFTRACE;
        // SAFETY: setsockopt reads an int from a valid pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                &group as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // A bigger buffer: a burst of events must not be dropped.
        let size: libc::c_int = 4 << 20;
        // SAFETY: as above.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(Tracer { sock: fd })
    }

    /// The events that came until `until` (or that are queued already).
    pub fn read_until(&self, until: Instant) -> io::Result<Vec<Event>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let mut fds = [nix::poll::PollFd::new(
                self.sock.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms))
                .map_err(io::Error::from)?;
            if n == 0 {
                return Ok(out);
            }
            // SAFETY: recv writes at most buf.len() bytes into buf.
            let got = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if got < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            out.extend(parse(&buf[..got as usize]));
        }
    }
}

/// A conntrack entry: the connection as it was sent and as it is
/// answered (a DNAT shows as a reply from another address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Conntrack {
    pub id: u32,
    pub original: Packet,
    pub reply: Packet,
}

/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET`, and the answer's type.
const CT_GET: u16 = 1 << 8 | 1;
const CT_NEW: u16 = 1 << 8;

/// One request to a NETLINK_NETFILTER socket in `ns` (at most a second
/// for the answer): the answer's messages.
fn ask(ns: &NetNs, request: &[u8]) -> io::Result<Vec<u8>> {
    let sock = super::netfilter_socket(ns, 0).map_err(io::Error::other)?;
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads a timeval from a valid pointer.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    // SAFETY: send reads the buffer it is given.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            request.as_ptr() as *const libc::c_void,
            request.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 1 << 14];
    // SAFETY: recv writes at most buf.len() bytes into buf.
    let got = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

/// The conntrack entry in `ns` of the connection sent as `original`
/// (addresses, protocol and ports), if there is one.
pub fn conntrack(ns: &NetNs, original: Packet) -> io::Result<Option<Conntrack>> {
    let mut b = super::tlv::Buf::default();
    let start = b.begin(
        CT_GET,
        libc::NLM_F_REQUEST as u16,
        1,
        libc::AF_INET as u8,
        0,
    );
    b.nest(1, |b| tuple(b, &original)); // CTA_TUPLE_ORIG
    b.end(start);
    Ok(parse_conntrack(&ask(ns, &b.bytes)?))
}

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE`, and the answer's type.
const RULE_GET: u16 = (10 << 8) | 7;
const RULE_NEW: u16 = (10 << 8) | 6;

/// The names of the expressions of rule `handle` in chain `chain` of
/// table `ip table` in `ns` (`lookup`, `numgen`, `immediate`, …), in
/// order: what a trace event's rule did, which the event does not say.
pub fn rule_expressions(
    ns: &NetNs,
    table: &str,
    chain: &str,
    handle: u64,
) -> io::Result<Vec<String>> {
    Ok(parse_rule_expressions(&get_rule(ns, table, chain, handle)?))
}

/// nf_tables' answer to GETRULE of rule `handle` of `chain`.
fn get_rule(ns: &NetNs, table: &str, chain: &str, handle: u64) -> io::Result<Vec<u8>> {
    let mut b = super::tlv::Buf::default();
    let start = b.begin(
        RULE_GET,
        libc::NLM_F_REQUEST as u16,
        1,
        libc::AF_INET as u8, // NFPROTO_IPV4
        0,
    );
    b.put_str(1, table); // NFTA_RULE_TABLE
    b.put_str(2, chain); // NFTA_RULE_CHAIN
    b.put_u64(3, handle); // NFTA_RULE_HANDLE
    b.end(start);
    ask(ns, &b.bytes)
}

/// The comment of rule `handle` of `chain` (None: it has none): what a
/// network policy's reject says about the pod and the policies.
pub fn rule_comment(
    ns: &NetNs,
    table: &str,
    chain: &str,
    handle: u64,
) -> io::Result<Option<String>> {
    let data = get_rule(ns, table, chain, handle)?;
    if data.len() < 20 || u16::from_ne_bytes(data[4..6].try_into().unwrap()) != RULE_NEW {
        return Ok(None);
    }
    let len = (u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize).min(data.len());
    // NFTA_RULE_USERDATA: libnftnl's records (type, length, value); the
    // comment is record 0, NUL-terminated.
    let Some((_, mut u)) = attrs(&data[20..len]).find(|(ty, _)| *ty == 7) else {
        return Ok(None);
    };
    while u.len() >= 2 {
        let (ty, n) = (u[0], u[1] as usize);
        let Some(v) = u.get(2..2 + n) else { break };
        if ty == 0 {
            return Ok(Some(string(v)));
        }
        u = &u[2 + n..];
    }
    Ok(None)
}

/// The expression names of the rule in nf_tables' answer (an error: none).
fn parse_rule_expressions(data: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    if data.len() < 20 {
        return names;
    }
    let len = (u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize).min(data.len());
    let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
    if ty != RULE_NEW {
        return names;
    }
    for (ty, v) in attrs(&data[20..len]) {
        if ty != 4 {
            continue; // NFTA_RULE_EXPRESSIONS
        }
        for (_, elem) in attrs(v) {
            names.extend(
                attrs(elem)
                    .filter(|(ty, _)| *ty == 1) // NFTA_EXPR_NAME
                    .map(|(_, name)| string(name)),
            );
        }
    }
    names
}

/// `CTA_TUPLE_IP { V4_SRC, V4_DST }, CTA_TUPLE_PROTO { NUM, SRC_PORT, DST_PORT }`
fn tuple(b: &mut super::tlv::Buf, p: &Packet) {
    b.nest(1, |b| {
        b.put(1, &p.saddr.octets());
        b.put(2, &p.daddr.octets());
    });
    b.nest(2, |b| {
        b.put(1, &[p.proto]);
        b.put(2, &p.sport.to_be_bytes());
        b.put(3, &p.dport.to_be_bytes());
    });
}

fn parse_tuple(data: &[u8]) -> Option<Packet> {
    let mut p = Packet {
        saddr: Ipv4Addr::UNSPECIFIED,
        daddr: Ipv4Addr::UNSPECIFIED,
        proto: 0,
        sport: 0,
        dport: 0,
    };
    let ip4 =
        |b: &[u8]| -> Option<Ipv4Addr> { Some(<[u8; 4]>::try_from(b.get(..4)?).ok()?.into()) };
    let port = |b: &[u8]| -> Option<u16> { Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?)) };
    for (ty, v) in attrs(data) {
        match ty {
            1 => {
                for (ty, v) in attrs(v) {
                    match ty {
                        1 => p.saddr = ip4(v)?,
                        2 => p.daddr = ip4(v)?,
                        _ => {}
                    }
                }
            }
            2 => {
                for (ty, v) in attrs(v) {
                    match ty {
                        1 => p.proto = *v.first()?,
                        2 => p.sport = port(v)?,
                        3 => p.dport = port(v)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(p)
}

/// The entry in ctnetlink's answer (an error answer: none).
fn parse_conntrack(data: &[u8]) -> Option<Conntrack> {
    if data.len() < 20 {
        return None;
    }
    let len = (u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize).min(data.len());
    let ty = u16::from_ne_bytes(data[4..6].try_into().ok()?);
    if ty != CT_NEW {
        return None;
    }
    let (mut id, mut original, mut reply) = (0, None, None);
    for (ty, v) in attrs(&data[20..len]) {
        match ty {
            1 => original = parse_tuple(v),
            2 => reply = parse_tuple(v),
            12 => id = be32(v)?,
            _ => {}
        }
    }
    Some(Conntrack {
        id,
        original: original?,
        reply: reply?,
    })
}

/// The trace events in a buffer of netlink messages.
pub fn parse(mut data: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < 16 || len > data.len() {
            break;
        }
        // After the header, the nfgenmsg (4 bytes), then attributes.
        if ty == MSG_TRACE && len >= 20 {
            if let Some(e) = event(&data[20..len]) {
                out.push(e);
            }
        }
        data = &data[align(len).min(data.len())..];
    }
    out
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes of a buffer: (type without flags, payload).
fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let payload = &data[4..len];
        data = &data[align(len).min(data.len())..];
        Some((ty, payload))
    })
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or_default()).into_owned()
}

fn event(data: &[u8]) -> Option<Event> {
    let (mut id, mut table, mut chain, mut kind, mut verdict, mut handle) =
        (0, String::new(), String::new(), "", None, None);
    let (mut network, mut transport): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    for (ty, p) in attrs(data) {
        match ty {
            1 => table = string(p),
            2 => chain = string(p),
            3 => {
                handle = p
                    .get(..8)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            }
            4 => {
                kind = match be32(p)? {
                    1 => "policy",
                    2 => "return",
                    3 => "rule",
                    _ => "other",
                }
            }
            5 => verdict = Some(parse_verdict(p)),
            6 => id = be32(p)?,
            8 => network = Some(p),
            9 => transport = Some(p),
            _ => {}
        }
    }
    let packet = network.and_then(|n| packet(n, transport));
    Some(Event {
        id,
        table,
        chain,
        kind,
        verdict,
        handle,
        packet,
    })
}

fn parse_verdict(data: &[u8]) -> Verdict {
    let (mut code, mut chain) = (None, String::new());
    for (ty, p) in attrs(data) {
        match ty {
            1 => code = be32(p).map(|c| c as i32),
            2 => chain = string(p),
            _ => {}
        }
    }
    match code {
        Some(0) => Verdict::Drop,
        Some(1) => Verdict::Accept,
        Some(-1) => Verdict::Continue,
        Some(-3) => Verdict::Jump(chain),
        Some(-4) => Verdict::Goto(chain),
        Some(-5) => Verdict::Return,
        Some(c) => Verdict::Other(c),
        None => Verdict::Other(i32::MIN),
    }
}

/// The addresses of an IPv4 header and the ports of the transport header
/// after it (TCP and UDP).
fn packet(ip: &[u8], transport: Option<&[u8]>) -> Option<Packet> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ports = transport.filter(|t| t.len() >= 4);
    Some(Packet {
        saddr: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        daddr: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        proto: ip[9],
        sport: ports.map_or(0, |t| u16::from_be_bytes([t[0], t[1]])),
        dport: ports.map_or(0, |t| u16::from_be_bytes([t[2], t[3]])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v.extend(payload);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    #[test]
    fn a_conntrack_answer_is_read() {
        let p = |s: [u8; 4], d: [u8; 4], sp: u16, dp: u16| Packet {
            saddr: s.into(),
            daddr: d.into(),
            proto: 6,
            sport: sp,
            dport: dp,
        };
        let (orig, reply) = (
            p([10, 244, 1, 3], [10, 0, 0, 20], 41822, 443),
            p([10, 244, 2, 2], [10, 244, 1, 3], 443, 41822),
        );
        let mut b = crate::proxy::netlink::tlv::Buf::default();
        let start = b.begin(CT_NEW, 0, 1, 2, 0);
        b.nest(1, |b| tuple(b, &orig));
        b.nest(2, |b| tuple(b, &reply));
        b.put_u32(12, 1234);
        b.end(start);
        assert_eq!(
            parse_conntrack(&b.bytes),
            Some(Conntrack {
                id: 1234,
                original: orig,
                reply
            })
        );
    }

    #[test]
    fn a_trace_message_is_read() {
        let mut ip = vec![0x45, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0];
        ip.extend([10, 244, 1, 3, 10, 0, 0, 20]);
        let tcp = [0xef, 0x10, 0, 80, 0, 0, 0, 0];
        let mut verdict = attr(1, &(-3i32).to_be_bytes());
        verdict.extend(attr(2, b"services\0"));
        let mut body = vec![2u8, 0, 0, 0]; // nfgenmsg: AF_INET
        for a in [
            attr(1, b"netlab\0"),
            attr(2, b"nat-prerouting\0"),
            attr(3, &12u64.to_be_bytes()),
            attr(4, &3u32.to_be_bytes()),
            attr(5 | 0x8000, &verdict),
            attr(6, &7u32.to_be_bytes()),
            attr(8, &ip),
            attr(9, &tcp),
        ] {
            body.extend(a);
        }
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend(MSG_TRACE.to_ne_bytes());
        msg.extend([0u8; 10]);
        msg.extend(body);
        let got = parse(&msg);
        assert_eq!(
            got,
            [Event {
                id: 7,
                table: "netlab".into(),
                chain: "nat-prerouting".into(),
                kind: "rule",
                verdict: Some(Verdict::Jump("services".into())),
                handle: Some(12),
                packet: Some(Packet {
                    saddr: Ipv4Addr::new(10, 244, 1, 3),
                    daddr: Ipv4Addr::new(10, 0, 0, 20),
                    proto: 6,
                    sport: 0xef10,
                    dport: 80,
                }),
            }]
        );
    }

    #[test]
    fn a_rules_expressions_are_read() {
        let expr = |name: &[u8]| {
            let mut e = attr(1, name);
            e.extend(attr(2 | 0x8000, &[0u8; 4]));
            attr(1 | 0x8000, &e)
        };
        let mut list = expr(b"payload\0");
        list.extend(expr(b"lookup\0"));
        list.extend(expr(b"immediate\0"));
        let mut body = vec![2u8, 0, 0, 0];
        for a in [
            attr(1, b"netlab\0"),
            attr(2, b"service-x\0"),
            attr(3, &5u64.to_be_bytes()),
            attr(4 | 0x8000, &list),
        ] {
            body.extend(a);
        }
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend(RULE_NEW.to_ne_bytes());
        msg.extend([0u8; 10]);
        msg.extend(body);
        assert_eq!(
            parse_rule_expressions(&msg),
            ["payload", "lookup", "immediate"]
        );
        // An error answer: no expressions.
        let mut err = 36u32.to_ne_bytes().to_vec();
        err.extend(2u16.to_ne_bytes());
        err.extend([0u8; 30]);
        assert!(parse_rule_expressions(&err).is_empty());
    }
}
