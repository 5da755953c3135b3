//! A [`Transaction`] as one nf_tables netlink batch: the messages nft
//! itself would send for the same commands, attribute for attribute (the
//! golden tests below hold bytes taken from `nft --debug=mnl`), so that
//! `nft list table ip netlab` prints what it would after `nft -f`.
//!
//! Rule statements become nf_tables expressions the way nft 1.0.6 compiles
//! them (`nft --debug=netlink` shows them in libnftnl's notation, quoted
//! in the comments), and sets carry nft's key type ids and "udata"
//! (byte order, comment), which is how nft knows to print `ipv4_addr`
//! rather than a number when it lists them.

use std::ops::Range;

use super::tlv::{Buf, Udata, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use crate::proxy::model::Protocol;
use crate::proxy::rule::{IpField, KeyField, Rule, Stmt, Verdict};
use crate::proxy::ruleset::{
    Chain, ChainType, Element, HookPoint, KeyPart, KeyType, Op, Set, SetKind, Transaction, Value,
};

// nfnetlink
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const AF_UNSPEC: u8 = 0;
const NFPROTO_IPV4: u8 = 2;

// enum nf_tables_msg_types
const NEWTABLE: u16 = 0;
const DELTABLE: u16 = 2;
const NEWCHAIN: u16 = 3;
const DELCHAIN: u16 = 5;
const NEWRULE: u16 = 6;
const DELRULE: u16 = 8;
const NEWSET: u16 = 9;
const DELSET: u16 = 11;
const NEWSETELEM: u16 = 12;
const DELSETELEM: u16 = 14;

// Attributes (linux/netfilter/nf_tables.h).
const TABLE_NAME: u16 = 1;
const TABLE_FLAGS: u16 = 2;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_TYPE: u16 = 7;
const HOOK_HOOKNUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
const RULE_USERDATA: u16 = 7;
const LIST_ELEM: u16 = 1;
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_DATA_TYPE: u16 = 6;
const SET_DATA_LEN: u16 = 7;
const SET_TIMEOUT: u16 = 11;
const SET_USERDATA: u16 = 13;
const ELEM_LIST_TABLE: u16 = 1;
const ELEM_LIST_SET: u16 = 2;
const ELEM_LIST_ELEMENTS: u16 = 3;
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const ELEM_FLAGS: u16 = 3;
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;

// Set flags and data.
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_MAP: u32 = 0x8;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// `NFT_SET_ELEM_INTERVAL_END`: the element ends an interval.
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;

// Verdict codes.
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

// Registers: 0 is the verdict, 1.. are 16 bytes wide, 8.. are 4 bytes wide
// (NFT_REG32_00 = 8 overlaps NFT_REG_1).
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;
const REG32_00: u32 = 8;

/// Elements per `NEWSETELEM` message: one message per element costs the
/// kernel a set lookup each; a message's attributes must stay below 64 KiB.
const ELEMENTS_PER_MESSAGE: usize = 256;

/// An encoded batch, and what each message of it came from.
#[derive(Debug)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub messages: Vec<Message>,
    /// Sequence number of the last message before `BATCH_END`, the one
    /// that asks for an acknowledgement.
    pub last_seq: u32,
}

/// One message: its sequence number, and the ops it carries (several for
/// a list of elements, each at its offset inside the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub seq: u32,
    pub ops: Range<usize>,
    pub element_offsets: Vec<u32>,
}

impl Batch {
    /// The op a kernel error points at: by sequence number, and for a list
    /// of elements by the offset of the attribute it names.
    pub fn op_of(&self, seq: u32, offset: Option<u32>) -> Option<Range<usize>> {
        let m = self.messages.iter().find(|m| m.seq == seq)?;
        if m.ops.len() <= 1 {
            return Some(m.ops.clone());
        }
        match offset {
            Some(off) => {
                let i = m.element_offsets.iter().rposition(|o| *o <= off)?;
                Some(m.ops.start + i..m.ops.start + i + 1)
            }
            None => Some(m.ops.clone()),
        }
    }
}

/// Encode `tx` as one batch, sequence numbers counting from `seq`.
pub fn batch(tx: &Transaction<'_>, seq: u32) -> Batch {
    let mut e = Encoder {
        b: Buf::with_capacity(tx.ops.len() * 160 + 64),
        table: tx.table,
        seq,
        messages: Vec::with_capacity(tx.ops.len()),
        message_starts_last: 0,
    };
    let begin = e.b.begin(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        e.seq,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    e.b.end(begin);
    e.seq += 1;
    let ops = &tx.ops;
    let mut i = 0;
    while i < ops.len() {
        // A run of element ops on the same set goes into one message.
        let run = match ops[i] {
            Op::AddElement(first) | Op::DeleteElement(first) => {
                let add = matches!(ops[i], Op::AddElement(_));
                let mut j = i + 1;
                while j < ops.len() && j - i < ELEMENTS_PER_MESSAGE {
                    match ops[j] {
                        Op::AddElement(x) if add && x.set == first.set => j += 1,
                        Op::DeleteElement(x) if !add && x.set == first.set => j += 1,
                        _ => break,
                    }
                }
                j
            }
            _ => i + 1,
        };
        e.op(ops, i..run);
        i = run;
    }
    // Ask for one acknowledgement, of the last message: the kernel answers
    // errors anyway, and an ack for every message of a 100 000-message
    // batch would overflow the socket.
    let last_seq = match e.messages.last() {
        Some(m) => {
            let at = e.message_starts_last;
            let flags_at = at + 6;
            let flags =
                u16::from_ne_bytes([e.b.bytes[flags_at], e.b.bytes[flags_at + 1]]) | NLM_F_ACK;
            e.b.bytes[flags_at..flags_at + 2].copy_from_slice(&flags.to_ne_bytes());
            m.seq
        }
        None => 0,
    };
    let end = e.b.begin(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        e.seq,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    e.b.end(end);
    Batch {
        bytes: e.b.bytes,
        messages: e.messages,
        last_seq,
    }
}

struct Encoder {
    b: Buf,
    table: &'static str,
    seq: u32,
    messages: Vec<Message>,
    /// Where the last message starts (to set its ACK flag).
    message_starts_last: usize,
}

impl Encoder {
    fn begin(&mut self, msg: u16, flags: u16) -> usize {
        self.b.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | flags,
            self.seq,
            NFPROTO_IPV4,
            0,
        )
    }

    fn op(&mut self, ops: &[Op<'_>], range: Range<usize>) {
        let start = match ops[range.start] {
            Op::AddTable => {
                let m = self.begin(NEWTABLE, NLM_F_CREATE);
                self.b.put_str(TABLE_NAME, self.table);
                self.b.put_u32(TABLE_FLAGS, 0);
                m
            }
            Op::DeleteTable => {
                let m = self.begin(DELTABLE, 0);
                self.b.put_str(TABLE_NAME, self.table);
                m
            }
            Op::AddSet(s) => {
                let m = self.begin(NEWSET, NLM_F_CREATE);
                set(&mut self.b, self.table, s, self.seq);
                m
            }
            Op::DeleteSet(s) => {
                let m = self.begin(DELSET, 0);
                self.b.put_str(SET_TABLE, self.table);
                self.b.put_str(SET_NAME, &s.name);
                m
            }
            Op::AddChain(c) => {
                let m = self.begin(NEWCHAIN, NLM_F_CREATE);
                chain(&mut self.b, self.table, c);
                m
            }
            Op::CreateChain(c) => {
                let m = self.begin(NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL);
                chain(&mut self.b, self.table, c);
                m
            }
            Op::FlushChain(name) => {
                // DELRULE naming only the chain deletes all of its rules.
                let m = self.begin(DELRULE, 0);
                self.b.put_str(RULE_TABLE, self.table);
                self.b.put_str(RULE_CHAIN, name);
                m
            }
            Op::DeleteChain(name) => {
                let m = self.begin(DELCHAIN, 0);
                self.b.put_str(CHAIN_TABLE, self.table);
                self.b.put_str(CHAIN_NAME, name);
                m
            }
            Op::AddRule(chain, r) => {
                let m = self.begin(NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
                rule(&mut self.b, self.table, chain, r);
                m
            }
            Op::AddElement(first) | Op::DeleteElement(first) => {
                let add = matches!(ops[range.start], Op::AddElement(_));
                let m = if add {
                    self.begin(NEWSETELEM, NLM_F_CREATE)
                } else {
                    self.begin(DELSETELEM, 0)
                };
                self.b.put_str(ELEM_LIST_TABLE, self.table);
                self.b.put_str(ELEM_LIST_SET, &first.set);
                let list = self.b.open(ELEM_LIST_ELEMENTS);
                let mut offsets = Vec::with_capacity(range.len());
                for op in &ops[range.clone()] {
                    let (Op::AddElement(x) | Op::DeleteElement(x)) = op else {
                        unreachable!("a run holds element ops only")
                    };
                    offsets.push((self.b.bytes.len() - m) as u32);
                    element(&mut self.b, x, add);
                }
                self.b.close(list);
                self.b.end(m);
                self.messages.push(Message {
                    seq: self.seq,
                    ops: range,
                    element_offsets: offsets,
                });
                self.message_starts_last = m;
                self.seq += 1;
                return;
            }
        };
        self.b.end(start);
        self.messages.push(Message {
            seq: self.seq,
            ops: range,
            element_offsets: Vec::new(),
        });
        self.message_starts_last = start;
        self.seq += 1;
    }
}

fn chain(b: &mut Buf, table: &str, c: &Chain) {
    b.put_str(CHAIN_TABLE, table);
    b.put_str(CHAIN_NAME, &c.name);
    if let Some(h) = &c.hook {
        b.put_str(
            CHAIN_TYPE,
            match h.kind {
                ChainType::Nat => "nat",
                ChainType::Filter => "filter",
            },
        );
        b.nest(CHAIN_HOOK, |b| {
            // enum nf_inet_hooks
            let num = match h.hook {
                HookPoint::Prerouting => 0,
                HookPoint::Input => 1,
                HookPoint::Forward => 2,
                HookPoint::Output => 3,
                HookPoint::Postrouting => 4,
            };
            b.put_u32(HOOK_HOOKNUM, num);
            b.put_u32(HOOK_PRIORITY, h.priority as u32);
        });
    }
}

/// nft's datatype ids and sizes (nftables `enum datatypes`).
fn key_type(k: KeyType) -> (u32, u32) {
    match k {
        KeyType::Ipv4Addr => (7, 4),
        KeyType::InetProto => (12, 1),
        KeyType::InetService => (13, 2),
    }
}

/// udata types of sets (libnftnl `enum nftnl_udata_set_types`).
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
const UDATA_SET_KEY_TYPEOF: u8 = 3;
const UDATA_SET_DATA_TYPEOF: u8 = 4;
const UDATA_SET_DATA_INTERVAL: u8 = 6;
const UDATA_SET_COMMENT: u8 = 7;
/// nft's `enum byteorder`.
const BYTEORDER_INVALID: u32 = 0;
const BYTEORDER_HOST_ENDIAN: u32 = 1;
const BYTEORDER_BIG_ENDIAN: u32 = 2;
/// nft's `enum expr_types`, as typeof udata records them.
const EXPR_PAYLOAD: u32 = 7;
const EXPR_CONCAT: u32 = 13;
const EXPR_NUMGEN: u32 = 23;
/// nft's `integer` datatype id, and its `ipv4_addr . inet_service`.
const TYPE_INTEGER: u32 = 4;
const TYPE_ADDR_SERVICE: u32 = (7 << 6) | 13;

fn set(b: &mut Buf, table: &str, s: &Set, id: u32) {
    b.put_str(SET_TABLE, table);
    b.put_str(SET_NAME, &s.name);
    let buckets = matches!(s.kind, SetKind::Buckets { .. });
    let is_map = matches!(s.kind, SetKind::Map | SetKind::Buckets { .. });
    let mut flags = 0;
    if buckets || s.kind == SetKind::Ranges {
        flags |= NFT_SET_INTERVAL;
    }
    if is_map {
        flags |= NFT_SET_MAP;
    }
    if s.timeout.is_some() {
        flags |= NFT_SET_TIMEOUT | NFT_SET_EVAL;
    }
    b.put_u32(SET_FLAGS, flags);
    // A concatenation's type is its parts' ids, 6 bits each; each part
    // takes a whole 4-byte register.
    let (ty, len) = if buckets {
        (TYPE_INTEGER, 4)
    } else if let [k] = s.key[..] {
        key_type(k)
    } else {
        s.key.iter().fold((0, 0), |(ty, len), k| {
            let (id, l) = key_type(*k);
            ((ty << 6) | id, len + l.div_ceil(4) * 4)
        })
    };
    b.put_u32(SET_KEY_TYPE, ty);
    b.put_u32(SET_KEY_LEN, len);
    match s.kind {
        SetKind::Map => {
            b.put_u32(SET_DATA_TYPE, NFT_DATA_VERDICT);
            b.put_u32(SET_DATA_LEN, 0);
        }
        SetKind::Buckets { .. } => {
            // An address and a port, each in its own 4-byte register.
            b.put_u32(SET_DATA_TYPE, TYPE_ADDR_SERVICE);
            b.put_u32(SET_DATA_LEN, 8);
        }
        SetKind::Set | SetKind::Ranges => {}
    }
    b.put_u32(10, id); // NFTA_SET_ID, as nft sends it
    if let Some(t) = s.timeout {
        b.put_u64(SET_TIMEOUT, u64::from(t) * 1000);
    }
    let mut u = Udata::default();
    // Addresses and ports are big endian; a concatenation has no one
    // order; numgen's number is the host's.
    let order = if buckets {
        BYTEORDER_HOST_ENDIAN
    } else if s.key.len() == 1 {
        BYTEORDER_BIG_ENDIAN
    } else {
        BYTEORDER_INVALID
    };
    u.put_u32(UDATA_SET_KEYBYTEORDER, order);
    if is_map {
        u.put_u32(UDATA_SET_DATABYTEORDER, BYTEORDER_INVALID);
    }
    if let SetKind::Buckets { modulus, proto } = s.kind {
        // typeof numgen random mod <modulus> : ip daddr . tcp dport
        u.nest(UDATA_SET_KEY_TYPEOF, |u| {
            u.put_u32(0, EXPR_NUMGEN);
            u.nest(1, |u| {
                u.put_u32(0, 1); // NFT_NG_RANDOM
                u.put_u32(1, modulus);
                u.put_u32(2, 0); // offset
            });
        });
        u.nest(UDATA_SET_DATA_TYPEOF, |u| {
            u.put_u32(0, EXPR_CONCAT);
            u.nest(1, |u| {
                // (proto_desc_id, template): ip daddr, <proto> dport.
                let transport = match proto {
                    Protocol::Tcp => 8,
                    Protocol::Udp => 6,
                    Protocol::Sctp => 10,
                };
                for (i, (desc, field)) in [(12, 12), (transport, 2)].into_iter().enumerate() {
                    u.nest(i as u8, |u| {
                        u.put_u32(0, EXPR_PAYLOAD);
                        u.nest(1, |u| {
                            u.put_u32(0, desc);
                            u.put_u32(1, field);
                        });
                    });
                }
            });
        });
    } else if s.kind == SetKind::Map || s.key.len() > 1 {
        // A concatenation of types: what nft 1.0.6 records is the
        // expression type and an empty nest.
        u.nest(UDATA_SET_KEY_TYPEOF, |u| {
            u.put_u32(0, EXPR_CONCAT);
            u.put(1, &[]);
        });
    }
    if is_map {
        u.put_u32(UDATA_SET_DATA_INTERVAL, 0);
    }
    if let Some(c) = &s.comment {
        u.put_str(UDATA_SET_COMMENT, c);
    }
    b.put(SET_USERDATA, &u.0);
}

fn key_bytes(parts: &[KeyPart]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.len() * 4);
    for p in parts {
        match p {
            KeyPart::Ip(ip) => v.extend_from_slice(&ip.octets()),
            KeyPart::Proto(p) => v.push(proto_number(*p)),
            KeyPart::Port(p) => v.extend_from_slice(&p.to_be_bytes()),
            // numgen's number goes through `byteorder hton` before the lookup.
            KeyPart::Range(start, _) => v.extend_from_slice(&start.to_be_bytes()),
            KeyPart::IpRange(first, _) => v.extend_from_slice(&first.octets()),
        }
        if parts.len() > 1 {
            v.resize(v.len().div_ceil(4) * 4, 0);
        }
    }
    v
}

/// One element; an interval is two: its start (with the value), and an
/// element flagged as an end, one past its last number.
fn element(b: &mut Buf, e: &Element, with_value: bool) {
    b.nest(LIST_ELEM, |b| {
        b.nest(ELEM_KEY, |b| b.put(DATA_VALUE, &key_bytes(&e.key.0)));
        if let (true, Some(v)) = (with_value, &e.value) {
            b.nest(ELEM_DATA, |b| match v {
                Value::Verdict(v) => verdict_data(b, v),
                Value::Endpoint(ip, port) => {
                    let mut data = [0u8; 8];
                    data[..4].copy_from_slice(&ip.octets());
                    data[4..6].copy_from_slice(&port.to_be_bytes());
                    b.put(DATA_VALUE, &data);
                }
            });
        }
    });
    let end = match e.key.0[..] {
        [KeyPart::Range(_, last)] => Some(last + 1),
        // The last range may end at the last address: no end element
        // then, as nft sends it (the interval runs to the end).
        [KeyPart::IpRange(_, last)] => u32::from(last).checked_add(1),
        _ => None,
    };
    if let Some(end) = end {
        b.nest(LIST_ELEM, |b| {
            b.put_u32(ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
            b.nest(ELEM_KEY, |b| {
                b.put(DATA_VALUE, &end.to_be_bytes());
            });
        });
    }
}

fn verdict_data(b: &mut Buf, v: &Verdict) {
    b.nest(DATA_VERDICT, |b| {
        let (code, chain) = match v {
            Verdict::Jump(c) => (NFT_JUMP, Some(c)),
            Verdict::Goto(c) => (NFT_GOTO, Some(c)),
            Verdict::Return => (NFT_RETURN, None),
            Verdict::Drop => (NF_DROP, None),
            Verdict::Accept => (NF_ACCEPT, None),
        };
        b.put_u32(VERDICT_CODE, code as u32);
        if let Some(c) = chain {
            b.put_str(VERDICT_CHAIN, c);
        }
    });
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// udata type of a rule's comment (`NFTNL_UDATA_RULE_COMMENT`).
const UDATA_RULE_COMMENT: u8 = 0;

fn rule(b: &mut Buf, table: &str, chain: &str, r: &Rule) {
    b.put_str(RULE_TABLE, table);
    b.put_str(RULE_CHAIN, chain);
    b.nest(RULE_EXPRESSIONS, |b| {
        for s in &r.stmts {
            stmt(b, s);
        }
    });
    if let Some(c) = &r.comment {
        let mut u = Udata::default();
        u.put_str(UDATA_RULE_COMMENT, c);
        b.put(RULE_USERDATA, &u.0);
    }
}

/// One expression: `{ name, data { attributes } }`.
fn expr(b: &mut Buf, name: &str, data: impl FnOnce(&mut Buf)) {
    b.nest(LIST_ELEM, |b| {
        b.put_str(EXPR_NAME, name);
        b.nest(EXPR_DATA, data);
    });
}

/// `[ payload load <len>b @ <network|transport> header + <off> => reg ]`
fn payload(b: &mut Buf, dreg: u32, transport: bool, offset: u32, len: u32) {
    expr(b, "payload", |b| {
        b.put_u32(1, dreg);
        b.put_u32(2, if transport { 2 } else { 1 });
        b.put_u32(3, offset);
        b.put_u32(4, len);
    });
}

/// `[ meta load <key> => reg ]`
fn meta_load(b: &mut Buf, key: u32, dreg: u32) {
    expr(b, "meta", |b| {
        b.put_u32(2, key);
        b.put_u32(1, dreg);
    });
}

const META_MARK: u32 = 3;
const META_L4PROTO: u32 = 16;
const META_NFTRACE: u32 = 12;

/// `[ cmp <eq|neq> reg 1 <value> ]`
fn cmp(b: &mut Buf, neq: bool, value: &[u8]) {
    expr(b, "cmp", |b| {
        b.put_u32(1, REG_1);
        b.put_u32(2, u32::from(neq));
        b.nest(3, |b| b.put(DATA_VALUE, value));
    });
}

/// `[ bitwise reg 1 = ( reg 1 & <mask> ) ^ <xor> ]`
fn bitwise(b: &mut Buf, mask: [u8; 4], xor: [u8; 4]) {
    expr(b, "bitwise", |b| {
        b.put_u32(1, REG_1);
        b.put_u32(2, REG_1);
        b.put_u32(6, 0); // NFT_BITWISE_BOOL
        b.put_u32(3, 4);
        b.nest(4, |b| b.put(DATA_VALUE, &mask));
        b.nest(5, |b| b.put(DATA_VALUE, &xor));
    });
}

/// `[ lookup reg 1 set <name> (dreg <dreg>) ]`
fn lookup(b: &mut Buf, set: &str, dreg: Option<u32>) {
    expr(b, "lookup", |b| {
        b.put_u32(2, REG_1);
        if let Some(d) = dreg {
            b.put_u32(3, d);
        }
        b.put_str(1, set);
    });
}

/// The parts of a concatenation: the first to reg 1, the next ones to the
/// 4-byte registers after it: reg 9, 10, ...
fn concat(b: &mut Buf, key: &[KeyField]) {
    for (i, k) in key.iter().enumerate() {
        let reg = if i == 0 { REG_1 } else { REG32_00 + i as u32 };
        match k {
            KeyField::IpSaddr => payload(b, reg, false, 12, 4),
            KeyField::IpDaddr => payload(b, reg, false, 16, 4),
            KeyField::L4Proto => meta_load(b, META_L4PROTO, reg),
            KeyField::ThDport => payload(b, reg, true, 2, 2),
        }
    }
}

fn immediate_verdict(b: &mut Buf, v: &Verdict) {
    expr(b, "immediate", |b| {
        b.put_u32(1, REG_VERDICT);
        b.nest(2, |b| verdict_data(b, v));
    });
}

fn immediate_value(b: &mut Buf, dreg: u32, value: &[u8]) {
    expr(b, "immediate", |b| {
        b.put_u32(1, dreg);
        b.nest(2, |b| b.put(DATA_VALUE, value));
    });
}

fn ip_offset(f: IpField) -> u32 {
    match f {
        IpField::Saddr => 12,
        IpField::Daddr => 16,
    }
}

fn stmt(b: &mut Buf, s: &Stmt) {
    match s {
        Stmt::Ip { field, neq, net } => {
            let off = ip_offset(*field);
            let prefix = u32::from(net.prefix_len());
            let addr = net.network().octets();
            if prefix > 0 && prefix % 8 == 0 {
                // [ payload load 2b @ network header + 12 => reg 1 ]
                // [ cmp neq reg 1 0x0000f40a ]: whole bytes only.
                let n = (prefix / 8) as usize;
                payload(b, REG_1, false, off, n as u32);
                cmp(b, *neq, &addr[..n]);
            } else {
                payload(b, REG_1, false, off, 4);
                bitwise(b, net.netmask().octets(), [0; 4]);
                cmp(b, *neq, &addr);
            }
        }
        Stmt::IpInSet { field, set } => {
            payload(b, REG_1, false, ip_offset(*field), 4);
            lookup(b, set, None);
        }
        Stmt::InSet { key, set } => {
            concat(b, key);
            lookup(b, set, None);
        }
        Stmt::L4Proto(p) => {
            meta_load(b, META_L4PROTO, REG_1);
            cmp(b, false, &[proto_number(*p)]);
        }
        Stmt::CtStateNew => {
            // [ ct load state => reg 1 ] [ bitwise ... & 0x00000008 ] [ cmp neq reg 1 0 ]
            expr(b, "ct", |b| {
                b.put_u32(2, 0); // NFT_CT_STATE
                b.put_u32(1, REG_1);
            });
            bitwise(b, 8u32.to_ne_bytes(), [0; 4]); // IP_CT_NEW bit, host order
            cmp(b, true, &[0; 4]);
        }
        Stmt::CtStateEstablishedRelated => {
            // [ ct load state => reg 1 ] [ bitwise ... & 0x00000006 ] [ cmp neq reg 1 0 ]
            expr(b, "ct", |b| {
                b.put_u32(2, 0); // NFT_CT_STATE
                b.put_u32(1, REG_1);
            });
            bitwise(b, 6u32.to_ne_bytes(), [0; 4]); // ESTABLISHED | RELATED bits
            cmp(b, true, &[0; 4]);
        }
        Stmt::CtStatusDnat => {
            // [ ct load status => reg 1 ] [ bitwise ... & 0x00000020 ] [ cmp neq reg 1 0 ]
            expr(b, "ct", |b| {
                b.put_u32(2, 2); // NFT_CT_STATUS
                b.put_u32(1, REG_1);
            });
            bitwise(b, 0x20u32.to_ne_bytes(), [0; 4]); // IPS_DST_NAT, host order
            cmp(b, true, &[0; 4]);
        }
        Stmt::MarkUnset(m) => {
            meta_load(b, META_MARK, REG_1);
            bitwise(b, m.to_ne_bytes(), [0; 4]);
            cmp(b, false, &[0; 4]);
        }
        Stmt::FibSaddrLocal => {
            expr(b, "fib", |b| {
                b.put_u32(3, 1); // NFTA_FIB_F_SADDR
                b.put_u32(2, 3); // NFT_FIB_RESULT_ADDRTYPE
                b.put_u32(1, REG_1);
            });
            cmp(b, false, &2u32.to_ne_bytes()); // RTN_LOCAL
        }
        Stmt::NumgenIsZero(n) => {
            expr(b, "numgen", |b| {
                b.put_u32(1, REG_1);
                b.put_u32(2, *n);
                b.put_u32(3, 1); // NFT_NG_RANDOM
                b.put_u32(4, 0);
            });
            cmp(b, false, &[0; 4]);
        }
        Stmt::Vmap { key, map } => {
            concat(b, key);
            lookup(b, map, Some(REG_VERDICT));
        }
        Stmt::MarkOr(m) => {
            meta_load(b, META_MARK, REG_1);
            bitwise(b, (!m).to_ne_bytes(), m.to_ne_bytes());
            meta_set_mark(b);
        }
        Stmt::MarkXor(m) => {
            meta_load(b, META_MARK, REG_1);
            bitwise(b, u32::MAX.to_ne_bytes(), m.to_ne_bytes());
            meta_set_mark(b);
        }
        Stmt::UpdateSaddr(set) => {
            payload(b, REG_1, false, 12, 4);
            expr(b, "dynset", |b| {
                b.put_u32(4, REG_1); // NFTA_DYNSET_SREG_KEY
                b.put_u32(3, 1); // NFT_DYNSET_OP_UPDATE
                b.put_str(1, set);
            });
        }
        Stmt::Dnat { ip, port } => {
            immediate_value(b, REG_1, &ip.octets());
            if let Some(p) = port {
                immediate_value(b, REG_2, &p.to_be_bytes());
            }
            expr(b, "nat", |b| {
                b.put_u32(1, 1); // NFT_NAT_DNAT
                b.put_u32(2, u32::from(NFPROTO_IPV4));
                b.put_u32(3, REG_1);
                if port.is_some() {
                    b.put_u32(5, REG_2);
                    b.put_u32(7, 2); // NF_NAT_RANGE_PROTO_SPECIFIED
                }
            });
        }
        Stmt::DnatBuckets {
            modulus,
            offset,
            map,
        } => {
            // [ numgen reg 1 = random mod <m> offset <o> ]
            // [ byteorder reg 1 = hton(reg 1, 4, 4) ]
            // [ lookup reg 1 set <map> dreg 1 ]
            // [ nat dnat ip addr_min reg 1 proto_min reg 9 ]
            expr(b, "numgen", |b| {
                b.put_u32(1, REG_1);
                b.put_u32(2, *modulus);
                b.put_u32(3, 1); // NFT_NG_RANDOM
                b.put_u32(4, *offset);
            });
            expr(b, "byteorder", |b| {
                b.put_u32(1, REG_1);
                b.put_u32(2, REG_1);
                b.put_u32(3, 1); // NFT_BYTEORDER_HTON
                b.put_u32(4, 4);
                b.put_u32(5, 4);
            });
            lookup(b, map, Some(REG_1));
            // The port is the map value's second register.
            expr(b, "nat", |b| {
                b.put_u32(1, 1); // NFT_NAT_DNAT
                b.put_u32(2, u32::from(NFPROTO_IPV4));
                b.put_u32(3, REG_1);
                b.put_u32(5, REG32_00 + 1);
            });
        }
        Stmt::MasqueradeFullyRandom => {
            expr(b, "masq", |b| b.put_u32(1, 0x10)); // NF_NAT_RANGE_PROTO_RANDOM_FULLY
        }
        Stmt::RejectTcpReset => reject(b, 1, 0), // NFT_REJECT_TCP_RST
        Stmt::Reject => reject(b, 0, 3),         // ICMP port unreachable
        Stmt::ThSport(p) => {
            payload(b, REG_1, true, 0, 2);
            cmp(b, false, &p.to_be_bytes());
        }
        Stmt::ThDport(lo, hi) => {
            payload(b, REG_1, true, 2, 2);
            if lo == hi {
                cmp(b, false, &lo.to_be_bytes());
            } else {
                // [ range eq reg 1 0x00005000 0x00006400 ]
                expr(b, "range", |b| {
                    b.put_u32(1, REG_1); // NFTA_RANGE_SREG
                    b.put_u32(2, 0); // NFT_RANGE_EQ
                    b.nest(3, |b| b.put(DATA_VALUE, &lo.to_be_bytes()));
                    b.nest(4, |b| b.put(DATA_VALUE, &hi.to_be_bytes()));
                });
            }
        }
        Stmt::RejectAdminProhibited => reject(b, 0, 13), // ICMP_PKT_FILTERED
        Stmt::NftraceOn => {
            // [ immediate reg 1 0x01 ] [ meta set nftrace with reg 1 ]
            immediate_value(b, REG_1, &[1]);
            expr(b, "meta", |b| {
                b.put_u32(2, META_NFTRACE);
                b.put_u32(3, REG_1);
            });
        }
        Stmt::Verdict(v) => immediate_verdict(b, v),
    }
}

fn meta_set_mark(b: &mut Buf) {
    expr(b, "meta", |b| {
        b.put_u32(2, META_MARK);
        b.put_u32(3, REG_1); // NFTA_META_SREG
    });
}

fn reject(b: &mut Buf, ty: u32, code: u8) {
    expr(b, "reject", |b| {
        b.put_u32(1, ty);
        b.put(2, &[code]);
    });
}
