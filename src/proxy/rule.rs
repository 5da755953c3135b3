//! One nftables rule as data: the few statements netlab's tables use,
//! typed, so that the same value prints as nft text (what a person reads
//! and what the golden tests pin down) and encodes as nf_tables netlink
//! expressions (what the kernel receives, see `netlink/encode.rs`).
//!
//! Deliberately not a general nft grammar: each variant is one phrase
//! `rules.rs` emits, with its exact nft spelling in [`fmt::Display`].

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::model::Protocol;

/// A rule: statements in order, and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Which address of the IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpField {
    Saddr,
    Daddr,
}

/// One part of a concatenated lookup key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyField {
    /// `ip saddr`
    IpSaddr,
    /// `ip daddr`
    IpDaddr,
    /// `meta l4proto`
    L4Proto,
    /// `th dport`
    ThDport,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stmt {
    /// `ip saddr 10.244.1.2`, `ip saddr != 10.244.0.0/16` (a /32 prints
    /// as the bare address).
    Ip {
        field: IpField,
        neq: bool,
        net: Ipv4Net,
    },
    /// `ip daddr @set`
    IpInSet {
        field: IpField,
        set: String,
    },
    /// `ip daddr . meta l4proto . th dport @set`: a concatenation in a set.
    InSet {
        key: Vec<KeyField>,
        set: String,
    },
    /// `meta l4proto tcp`
    L4Proto(Protocol),
    /// `ct state new`
    CtStateNew,
    /// `ct state established,related`: a packet of a connection already
    /// let through, or an error about one.
    CtStateEstablishedRelated,
    /// `ct status dnat`: the connection's destination was NATed.
    CtStatusDnat,
    /// `mark and 0x4000 == 0`
    MarkUnset(u32),
    /// `fib saddr type local`
    FibSaddrLocal,
    /// `numgen random mod N == 0`
    NumgenIsZero(u32),
    /// `ip daddr . meta l4proto . th dport vmap @map`
    Vmap {
        key: Vec<KeyField>,
        map: String,
    },
    /// `mark set mark or 0x4000`
    MarkOr(u32),
    /// `mark set mark xor 0x4000`
    MarkXor(u32),
    /// `update @set { ip saddr }`
    UpdateSaddr(String),
    /// `dnat to 10.244.1.2:8080`
    Dnat {
        ip: Ipv4Addr,
        port: Option<u16>,
    },
    /// `dnat ip to numgen random mod 65536 offset 131072 map @map`: draw a
    /// number and DNAT to the address and port the interval map holds for
    /// it. Nothing happens (the rule does not match) if the map has none.
    DnatBuckets {
        modulus: u32,
        offset: u32,
        map: String,
    },
    /// `masquerade fully-random`
    MasqueradeFullyRandom,
    /// `reject with tcp reset`
    RejectTcpReset,
    /// `reject` (ICMP port unreachable)
    Reject,
    /// `th sport 61234`: a transport source port (`netlab trace`'s probe).
    ThSport(u16),
    /// `th dport 80`, `th dport 8000-8080` (both ends included); after a
    /// `meta l4proto` match.
    ThDport(u16, u16),
    /// `reject with icmp admin-prohibited`: what a network policy answers
    /// to a connection it denies (ICMP "communication administratively
    /// prohibited"), so that the client fails at once rather than after a
    /// timeout, with a reason.
    RejectAdminProhibited,
    /// `meta nftrace set 1`: the kernel reports what the rules do with
    /// the packet (`netlab trace`).
    NftraceOn,
    Verdict(Verdict),
}

/// Where a rule or a verdict map element sends the packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    Jump(String),
    Goto(String),
    Return,
    Drop,
    Accept,
}

impl Rule {
    pub fn new(stmts: Vec<Stmt>) -> Rule {
        Rule {
            stmts,
            comment: None,
        }
    }

    pub fn comment(mut self, comment: &str) -> Rule {
        self.comment = Some(comment.to_string());
        self
    }

    /// The named sets and maps the rule refers to.
    pub fn sets(&self) -> impl Iterator<Item = &str> {
        self.stmts.iter().filter_map(|s| match s {
            Stmt::IpInSet { set, .. } => Some(set.as_str()),
            Stmt::Vmap { map, .. } => Some(map.as_str()),
            Stmt::UpdateSaddr(set) => Some(set.as_str()),
            Stmt::InSet { set, .. } => Some(set.as_str()),
            Stmt::DnatBuckets { map, .. } => Some(map.as_str()),
            _ => None,
        })
    }
}

/// `ip saddr <net> jump <chain>` and friends: the statements, then a verdict.
pub fn then(mut stmts: Vec<Stmt>, verdict: Verdict) -> Rule {
    stmts.push(Stmt::Verdict(verdict));
    Rule::new(stmts)
}

impl IpField {
    pub fn nft(self) -> &'static str {
        match self {
            IpField::Saddr => "saddr",
            IpField::Daddr => "daddr",
        }
    }
}

impl fmt::Display for KeyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyField::IpSaddr => "ip saddr",
            KeyField::IpDaddr => "ip daddr",
            KeyField::L4Proto => "meta l4proto",
            KeyField::ThDport => "th dport",
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Return => f.write_str("return"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Accept => f.write_str("accept"),
        }
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Ip { field, neq, net } => {
                write!(f, "ip {} ", field.nft())?;
                if *neq {
                    f.write_str("!= ")?;
                }
                if net.prefix_len() == 32 {
                    write!(f, "{}", net.addr())
                } else {
                    write!(f, "{net}")
                }
            }
            Stmt::IpInSet { field, set } => write!(f, "ip {} @{set}", field.nft()),
            Stmt::InSet { key, set } => {
                concat(f, key)?;
                write!(f, " @{set}")
            }
            Stmt::L4Proto(p) => write!(f, "meta l4proto {p}"),
            Stmt::CtStateNew => f.write_str("ct state new"),
            Stmt::CtStateEstablishedRelated => f.write_str("ct state established,related"),
            Stmt::CtStatusDnat => f.write_str("ct status dnat"),
            Stmt::MarkUnset(m) => write!(f, "mark and {m:#x} == 0"),
            Stmt::FibSaddrLocal => f.write_str("fib saddr type local"),
            Stmt::NumgenIsZero(n) => write!(f, "numgen random mod {n} == 0"),
            Stmt::Vmap { key, map } => {
                concat(f, key)?;
                write!(f, " vmap @{map}")
            }
            Stmt::MarkOr(m) => write!(f, "mark set mark or {m:#x}"),
            Stmt::MarkXor(m) => write!(f, "mark set mark xor {m:#x}"),
            Stmt::UpdateSaddr(set) => write!(f, "update @{set} {{ ip saddr }}"),
            Stmt::Dnat { ip, port } => match port {
                Some(p) => write!(f, "dnat to {ip}:{p}"),
                None => write!(f, "dnat to {ip}"),
            },
            Stmt::DnatBuckets {
                modulus,
                offset,
                map,
            } => {
                write!(f, "dnat ip to numgen random mod {modulus}")?;
                if *offset != 0 {
                    write!(f, " offset {offset}")?;
                }
                write!(f, " map @{map}")
            }
            Stmt::MasqueradeFullyRandom => f.write_str("masquerade fully-random"),
            Stmt::RejectTcpReset => f.write_str("reject with tcp reset"),
            Stmt::Reject => f.write_str("reject"),
            Stmt::ThSport(p) => write!(f, "th sport {p}"),
            Stmt::ThDport(a, b) if a == b => write!(f, "th dport {a}"),
            Stmt::ThDport(a, b) => write!(f, "th dport {a}-{b}"),
            Stmt::RejectAdminProhibited => f.write_str("reject with icmp admin-prohibited"),
            Stmt::NftraceOn => f.write_str("meta nftrace set 1"),
            Stmt::Verdict(v) => write!(f, "{v}"),
        }
    }
}

/// `ip daddr . meta l4proto . th dport`
fn concat(f: &mut fmt::Formatter<'_>, key: &[KeyField]) -> fmt::Result {
    for (i, k) in key.iter().enumerate() {
        if i > 0 {
            f.write_str(" . ")?;
        }
        write!(f, "{k}")?;
    }
    Ok(())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stmts.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        if let Some(c) = &self.comment {
            write!(f, " comment \"{c}\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn prints_like_nft() {
        let r = then(
            vec![
                Stmt::Ip {
                    field: IpField::Daddr,
                    neq: false,
                    net: net("10.0.0.10/32"),
                },
                Stmt::Ip {
                    field: IpField::Saddr,
                    neq: true,
                    net: net("10.244.0.0/16"),
                },
            ],
            Verdict::Jump("mark-for-masquerade".into()),
        );
        assert_eq!(
            r.to_string(),
            "ip daddr 10.0.0.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
        );
        let r = Rule::new(vec![Stmt::Vmap {
            key: vec![KeyField::IpDaddr, KeyField::L4Proto, KeyField::ThDport],
            map: "service-ips".into(),
        }]);
        assert_eq!(
            r.to_string(),
            "ip daddr . meta l4proto . th dport vmap @service-ips"
        );
        let r = then(vec![Stmt::MarkUnset(0x4000)], Verdict::Return).comment("x y");
        assert_eq!(r.to_string(), "mark and 0x4000 == 0 return comment \"x y\"");
        assert_eq!(r.sets().count(), 0);
    }
}
