//! Link faults with the kernel's own tools: a `netem` qdisc at the root of
//! an interface (`tc qdisc replace dev eth0 root netem delay 50ms …`), set,
//! read back and removed through rtnetlink.
//!
//! netlink-packet-route has no netem options (its TCA_OPTIONS is a raw
//! `struct tc_netem_qopt` followed by attributes, not a list of
//! attributes), so [`Netem::encode`] and [`Netem::decode`] write and read
//! that payload here, after the kernel's `include/uapi/linux/pkt_sched.h`;
//! the request itself is rtnetlink's.

use futures::TryStreamExt;
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{
    DefaultNla, NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};

use super::conn::Conn;
use super::error::NetError;

/// What a netem qdisc does to the packets leaving an interface.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Netem {
    /// Added delay, in microseconds.
    pub delay_us: u64,
    /// ± this much, uniformly (no distribution table), in microseconds.
    pub jitter_us: u64,
    /// Packets dropped, in percent.
    pub loss_pct: f64,
    /// The rate the interface sends at, in bits per second (0: no limit).
    pub rate_bps: u64,
    /// Packets with a flipped bit, in percent.
    pub corrupt_pct: f64,
}

const TCA_OPTIONS: u16 = 2;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
/// The queue's length in packets (tc's default).
const LIMIT: u32 = 1000;

/// A percentage as the kernel's probability (0 none, u32::MAX always).
fn probability(pct: f64) -> u32 {
    ((pct.clamp(0.0, 100.0) / 100.0) * u32::MAX as f64).round() as u32
}

fn percent(p: u32) -> f64 {
    // Two decimals: what was asked, not the rounding of its u32.
    ((p as f64 / u32::MAX as f64) * 10_000.0).round() / 100.0
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// The netlink attributes in `bytes`: (kind, value, the whole attribute
/// with its padding); a malformed one ends the walk.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]);
        if len < 4 || len > bytes.len() {
            return None;
        }
        let whole = &bytes[..((len + 3) & !3).min(bytes.len())];
        let value = &bytes[4..len];
        bytes = &bytes[whole.len()..];
        Some((kind, value, whole))
    })
}

impl Netem {
    /// The TCA_OPTIONS payload: `tc_netem_qopt`, then the attributes.
    pub fn encode(&self) -> Vec<u8> {
        let ticks = |us: u64| ((us * 1000) >> 6).min(u32::MAX as u64) as u32;
        let mut out = Vec::new();
        for v in [
            ticks(self.delay_us),
            LIMIT,
            probability(self.loss_pct),
            0, // gap
            0, // duplicate
            ticks(self.jitter_us),
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        attr(
            &mut out,
            TCA_NETEM_LATENCY64,
            &((self.delay_us * 1000) as i64).to_ne_bytes(),
        );
        attr(
            &mut out,
            TCA_NETEM_JITTER64,
            &((self.jitter_us * 1000) as i64).to_ne_bytes(),
        );
        if self.corrupt_pct > 0.0 {
            let mut v = probability(self.corrupt_pct).to_ne_bytes().to_vec();
            v.extend_from_slice(&0u32.to_ne_bytes());
            attr(&mut out, TCA_NETEM_CORRUPT, &v);
        }
        if self.rate_bps > 0 {
            let bytes = self.rate_bps / 8;
            let mut v = (bytes.min(u32::MAX as u64) as u32).to_ne_bytes().to_vec();
            v.extend_from_slice(&[0u8; 12]); // packet_overhead, cell_size, cell_overhead
            attr(&mut out, TCA_NETEM_RATE, &v);
            if bytes > u32::MAX as u64 {
                attr(&mut out, TCA_NETEM_RATE64, &bytes.to_ne_bytes());
            }
        }
        out
    }

    /// Reads a netem TCA_OPTIONS payload back.
    pub fn decode(payload: &[u8]) -> Option<Netem> {
        let word = |b: &[u8], i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(
                b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
            ))
        };
        let mut n = Netem {
            delay_us: ((word(payload, 0)? as u64) << 6) / 1000,
            loss_pct: percent(word(payload, 2)?),
            jitter_us: ((word(payload, 5)? as u64) << 6) / 1000,
            ..Default::default()
        };
        for (kind, v, _) in attributes(payload.get(24..)?) {
            let i64_of = |v: &[u8]| {
                v.get(..8)
                    .map(|b| i64::from_ne_bytes(b.try_into().unwrap()))
            };
            match kind {
                TCA_NETEM_LATENCY64 => n.delay_us = i64_of(v).unwrap_or(0).max(0) as u64 / 1000,
                TCA_NETEM_JITTER64 => n.jitter_us = i64_of(v).unwrap_or(0).max(0) as u64 / 1000,
                TCA_NETEM_CORRUPT => n.corrupt_pct = word(v, 0).map(percent).unwrap_or(0.0),
                TCA_NETEM_RATE => n.rate_bps = word(v, 0).unwrap_or(0) as u64 * 8,
                TCA_NETEM_RATE64 => {
                    n.rate_bps = i64_of(v).unwrap_or(0).max(0) as u64 * 8;
                }
                _ => {}
            }
        }
        Some(n)
    }

    /// tc's words for it: `delay 50ms 10ms loss 5% rate 10Mbit corrupt 1%`.
    pub fn describe(&self) -> String {
        let ms = |us: u64| {
            if us.is_multiple_of(1000) {
                format!("{}ms", us / 1000)
            } else {
                format!("{}us", us)
            }
        };
        let mut parts = Vec::new();
        if self.delay_us > 0 || self.jitter_us > 0 {
            parts.push(format!("delay {}", ms(self.delay_us)));
            if self.jitter_us > 0 {
                parts.push(ms(self.jitter_us));
            }
        }
        if self.loss_pct > 0.0 {
            parts.push(format!("loss {}%", self.loss_pct));
        }
        if self.rate_bps > 0 {
            parts.push(format!("rate {}", rate_words(self.rate_bps)));
        }
        if self.corrupt_pct > 0.0 {
            parts.push(format!("corrupt {}%", self.corrupt_pct));
        }
        parts.join(" ")
    }
}

/// A rate as tc writes it: `10Mbit`, `512Kbit`, `1Gbit`.
pub fn rate_words(bps: u64) -> String {
    for (unit, size) in [
        ("Gbit", 1_000_000_000),
        ("Mbit", 1_000_000),
        ("Kbit", 1_000),
    ] {
        if bps >= size && bps.is_multiple_of(size) {
            return format!("{}{unit}", bps / size);
        }
    }
    format!("{bps}bit")
}

/// A rate as tc reads it: `10mbit`, `100kbit`, `1gbit`, `8000bit`, and the
/// bytes forms `1mbps` (megabytes a second).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..digits]
        .parse()
        .map_err(|_| format!("{text:?} is not a rate: write e.g. 10mbit, 512kbit, 1gbit"))?;
    let scale = match &t[digits..] {
        "bit" | "" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => {
            return Err(format!(
                "{text:?} is not a rate: write e.g. 10mbit, 512kbit, 1gbit"
            ))
        }
    };
    let bps = (n * scale).round() as u64;
    if bps < 8 {
        return Err(format!("{text:?}: a rate must be at least 8bit"));
    }
    Ok(bps)
}

/// A percentage as tc reads it: `5%` or `5`.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let t = text.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
    }
}

/// `tc qdisc replace dev IF root netem …`, or (None) `tc qdisc del dev IF
/// root` (the interface's default again; nothing to remove is no error).
pub(crate) async fn set(conn: &Conn, ifname: &str, netem: Option<&Netem>) -> Result<(), NetError> {
    let index = super::link::index(conn, ifname).await? as i32;
    let what = conn.obj("netem qdisc on", ifname);
    let Some(netem) = netem else {
        let mut del = conn.handle.qdisc().del(index);
        del.message_mut().header.parent = TcHandle::ROOT;
        return match del.execute().await {
            Ok(()) => Ok(()),
            // ENOENT: only the default qdisc is there.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => Ok(()),
            Err(e) => Err(NetError::nl("removing", what, e)),
        };
    };
    let mut msg = TcMessage::with_index(index);
    msg.header.parent = TcHandle::ROOT;
    msg.attributes.push(TcAttribute::Kind("netem".into()));
    msg.attributes.push(TcAttribute::Other(DefaultNla::new(
        TCA_OPTIONS,
        netem.encode(),
    )));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut handle = conn.handle.clone();
    let mut answers = handle
        .request(req)
        .map_err(|e| NetError::nl("setting", what.clone(), e))?;
    use futures::StreamExt;
    while let Some(m) = answers.next().await {
        if let rtnetlink::packet_core::NetlinkPayload::Error(e) = m.payload {
            if e.raw_code() == -libc::ENOENT {
                // The kernel knows no qdisc of that kind (and could not
                // load its module).
                return Err(NetError::Refused {
                    op: "set",
                    object: what,
                    reason: "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM; on Debian and Ubuntu kernels it is the module sch_netem: modprobe sch_netem)".into(),
                });
            }
            if e.code.is_some() {
                return Err(NetError::nl(
                    "setting",
                    what,
                    rtnetlink::Error::NetlinkError(e),
                ));
            }
        }
    }
    Ok(())
}

/// The netem qdisc at the root of `ifname`, if there is one.
pub(crate) async fn get(conn: &Conn, ifname: &str) -> Result<Option<Netem>, NetError> {
    let index = super::link::index(conn, ifname).await? as i32;
    let mut qdiscs = conn.handle.qdisc().get().index(index).execute();
    while let Some(q) = qdiscs
        .try_next()
        .await
        .map_err(|e| NetError::nl("listing", conn.obj("qdiscs of", ifname), e))?
    {
        let netem = q
            .attributes
            .iter()
            .any(|a| matches!(a, TcAttribute::Kind(k) if k == "netem"));
        if !netem || q.header.parent != TcHandle::ROOT {
            continue;
        }
        for a in &q.attributes {
            let payload = match a {
                TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                    TcOption::Other(nla) => {
                        let mut b = vec![0u8; rtnetlink::packet_core::Emitable::buffer_len(nla)];
                        rtnetlink::packet_core::Emitable::emit(nla, &mut b);
                        Some(b[4..].to_vec())
                    }
                    _ => None,
                }),
                TcAttribute::Other(nla)
                    if rtnetlink::packet_core::Nla::kind(nla) == TCA_OPTIONS =>
                {
                    let mut b = vec![0u8; rtnetlink::packet_core::Nla::value_len(nla)];
                    rtnetlink::packet_core::Nla::emit_value(nla, &mut b);
                    Some(b)
                }
                _ => None,
            };
            if let Some(p) = payload {
                return Ok(Netem::decode(&p));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_options_round_trip() {
        let cases = [
            Netem {
                delay_us: 50_000,
                jitter_us: 10_000,
                loss_pct: 5.0,
                rate_bps: 10_000_000,
                corrupt_pct: 1.5,
            },
            Netem {
                delay_us: 250,
                ..Default::default()
            },
            Netem {
                rate_bps: 80_000_000_000,
                ..Default::default()
            },
            Netem::default(),
        ];
        for n in cases {
            let bytes = n.encode();
            assert_eq!(bytes.len() % 4, 0);
            assert_eq!(Netem::decode(&bytes), Some(n.clone()), "{n:?}");
        }
        // The fixed part as the kernel reads it: 50 ms is 781 250 ticks of
        // 64 ns; 5% of u32::MAX.
        let bytes = Netem {
            delay_us: 50_000,
            loss_pct: 5.0,
            ..Default::default()
        }
        .encode();
        let word = |i: usize| u32::from_ne_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(word(0), 781_250);
        assert_eq!(word(1), 1000);
        assert_eq!(word(2), 214_748_365);
    }

    /// What iproute2's tc (6.x) sends as TCA_OPTIONS for `tc qdisc replace
    /// dev lo root netem delay 50ms 10ms loss 5% rate 10mbit corrupt 1%`,
    /// captured with strace (`unshare -n strace -e trace=sendmsg -xx tc …`;
    /// the kernel here has no netem, but the request is made all the same).
    #[cfg(target_endian = "little")]
    const TC_NETEM: &[u8] = b"\xc2\xeb\x0b\x00\xe8\x03\x00\x00\xcd\xcc\xcc\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x5a\x62\x02\x00\x0c\x00\x04\x00\x29\x5c\x8f\x02\x00\x00\x00\x00\x14\x00\x06\x00\xd0\x12\x13\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

    #[cfg(target_endian = "little")]
    #[test]
    fn netem_options_are_iproute2s() {
        let n = Netem {
            delay_us: 50_000,
            jitter_us: 10_000,
            loss_pct: 5.0,
            rate_bps: 10_000_000,
            corrupt_pct: 1.0,
        };
        // tc's request reads back as what was asked.
        assert_eq!(Netem::decode(TC_NETEM), Some(n.clone()));
        // Ours is tc's, byte for byte, but for the two 64-bit attributes
        // (nanoseconds) that it adds after the fixed part: tc sends them
        // only when ticks of 64 ns cannot hold the time; the kernel takes
        // them over the ticks when present.
        let ours = n.encode();
        let (fixed, attrs) = ours.split_at(24);
        assert_eq!(fixed, &TC_NETEM[..24]);
        let kept: Vec<u8> = attributes(attrs)
            .filter(|(kind, _, _)| ![TCA_NETEM_LATENCY64, TCA_NETEM_JITTER64].contains(kind))
            .flat_map(|(_, _, whole)| whole.iter().copied())
            .collect();
        assert_eq!(kept, &TC_NETEM[24..]);
    }

    #[test]
    fn tc_words() {
        assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate("512Kbit"), Ok(512_000));
        assert_eq!(parse_rate("1mbps"), Ok(8_000_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1bit").is_err());
        assert_eq!(parse_percent("5%"), Ok(5.0));
        assert_eq!(parse_percent("0.5"), Ok(0.5));
        assert!(parse_percent("101%").is_err());
        let n = Netem {
            delay_us: 50_000,
            jitter_us: 10_000,
            loss_pct: 5.0,
            rate_bps: 10_000_000,
            corrupt_pct: 1.0,
        };
        assert_eq!(
            n.describe(),
            "delay 50ms 10ms loss 5% rate 10Mbit corrupt 1%"
        );
    }
}
