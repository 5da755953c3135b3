//! Netlink framing: messages (`nlmsghdr` + `nfgenmsg`) and attributes
//! (`nlattr` TLVs, nested ones patched with their length when closed),
//! appended to one buffer, which is the batch the kernel receives. Also
//! libnftnl's "udata" TLVs (u8 type, u8 length), which nft stores in rules
//! and sets and reads back when it lists them.
//!
//! Header fields are in host order, nf_tables values in network order,
//! exactly as the kernel expects them.

/// `NLA_F_NESTED`: libnftnl marks nests with it, so do we.
pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

const NLMSG_HDRLEN: usize = 16;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A growing buffer of netlink messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Buf {
    pub bytes: Vec<u8>,
}

impl Buf {
    pub fn with_capacity(n: usize) -> Buf {
        Buf {
            bytes: Vec::with_capacity(n),
        }
    }

    /// Start a message: `nlmsghdr` (length patched by [`Buf::end`]) and
    /// `nfgenmsg` (family, version 0, res_id in network order). Returns the
    /// message's start offset.
    pub fn begin(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        self.bytes.extend_from_slice(&ty.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        self.bytes.push(family);
        self.bytes.push(0); // NFNETLINK_V0
        self.bytes.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Close the message started at `start`.
    pub fn end(&mut self, start: usize) {
        let len = (self.bytes.len() - start) as u32;
        self.bytes[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// One attribute, padded to 4 bytes.
    pub fn put(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&ty.to_ne_bytes());
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len() + align4(len) - len, 0);
    }

    pub fn put_u32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }

    pub fn put_u64(&mut self, ty: u16, v: u64) {
        self.put(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string.
    pub fn put_str(&mut self, ty: u16, s: &str) {
        let len = 4 + s.len() + 1;
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&ty.to_ne_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
        self.bytes.push(0);
        self.bytes.resize(self.bytes.len() + align4(len) - len, 0);
    }

    /// Open a nest; returns its offset for [`Buf::close`].
    pub fn open(&mut self, ty: u16) -> usize {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&0u16.to_ne_bytes());
        self.bytes
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub fn close(&mut self, at: usize) {
        let len = (self.bytes.len() - at) as u16;
        self.bytes[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// `open`, fill, `close`.
    pub fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Buf)) {
        let at = self.open(ty);
        f(self);
        self.close(at);
    }
}

/// libnftnl's user data: a list of (u8 type, u8 length, value).
#[derive(Debug, Default)]
pub struct Udata(pub Vec<u8>);

impl Udata {
    pub fn put(&mut self, ty: u8, value: &[u8]) {
        self.0.push(ty);
        self.0.push(value.len() as u8);
        self.0.extend_from_slice(value);
    }

    /// libnftnl stores numbers in host order here.
    pub fn put_u32(&mut self, ty: u8, v: u32) {
        self.put(ty, &v.to_ne_bytes());
    }

    /// NUL-terminated; nft cuts comments at 128 bytes, so 255 always fits.
    pub fn put_str(&mut self, ty: u8, s: &str) {
        let s = &s.as_bytes()[..s.len().min(254)];
        self.0.push(ty);
        self.0.push(s.len() as u8 + 1);
        self.0.extend_from_slice(s);
        self.0.push(0);
    }

    pub fn nest(&mut self, ty: u8, f: impl FnOnce(&mut Udata)) {
        self.0.push(ty);
        let at = self.0.len();
        self.0.push(0);
        f(self);
        self.0[at] = (self.0.len() - at - 1) as u8;
    }
}

/// A message the kernel sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ty: u16,
    pub seq: u32,
    /// For `NLMSG_ERROR`: 0 (an acknowledgement) or a negative errno.
    pub error: i32,
    /// Extended ack: the kernel's message, and the offset of the attribute
    /// it objected to, from the start of our message.
    pub msg: Option<String>,
    pub offset: Option<u32>,
}

pub const NLMSG_ERROR: u16 = 2;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;

/// Split a datagram from the kernel into messages. For errors, the seq is
/// that of *our* message they answer (the socket has `NETLINK_CAP_ACK`, so
/// only our header is quoted back).
pub fn parse_replies(mut data: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let u16_at = |d: &[u8], i: usize| u16::from_ne_bytes([d[i], d[i + 1]]);
    let u32_at = |d: &[u8], i: usize| u32::from_ne_bytes(d[i..i + 4].try_into().unwrap());
    while data.len() >= NLMSG_HDRLEN {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let msg = &data[..len];
        let ty = u16_at(msg, 4);
        let flags = u16_at(msg, 6);
        let mut reply = Reply {
            ty,
            seq: u32_at(msg, 8),
            error: 0,
            msg: None,
            offset: None,
        };
        // struct nlmsgerr { int error; struct nlmsghdr msg; } [+ TLVs]
        if ty == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 + NLMSG_HDRLEN {
            let body = &msg[NLMSG_HDRLEN..];
            reply.error = i32::from_ne_bytes(body[0..4].try_into().unwrap());
            reply.seq = u32_at(body, 4 + 8);
            if flags & NLM_F_ACK_TLVS != 0 {
                let mut tlvs = &body[4 + NLMSG_HDRLEN..];
                while tlvs.len() >= 4 {
                    let alen = u16_at(tlvs, 0) as usize;
                    let aty = u16_at(tlvs, 2) & !NLA_F_NESTED;
                    if alen < 4 || alen > tlvs.len() {
                        break;
                    }
                    let val = &tlvs[4..alen];
                    match aty {
                        NLMSGERR_ATTR_MSG => {
                            let s = val.split(|b| *b == 0).next().unwrap_or(&[]);
                            reply.msg = Some(String::from_utf8_lossy(s).into_owned());
                        }
                        NLMSGERR_ATTR_OFFS if val.len() >= 4 => {
                            reply.offset = Some(u32_at(val, 0));
                        }
                        _ => {}
                    }
                    tlvs = &tlvs[align4(alen).min(tlvs.len())..];
                }
            }
        }
        out.push(reply);
        data = &data[align4(len).min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_patched() {
        let mut b = Buf::default();
        b.put_str(1, "netlab");
        b.nest(4, |b| b.put_u32(1, 2));
        assert_eq!(
            b.bytes,
            [
                11, 0, 1, 0, b'n', b'e', b't', b'l', b'a', b'b', 0, 0, // name + pad
                12, 0, 4, 0x80, // nest, NLA_F_NESTED
                8, 0, 1, 0, 0, 0, 0, 2, // u32 in network order
            ]
        );
    }

    #[test]
    fn udata_is_type_length_value() {
        let mut u = Udata::default();
        u.put_u32(0, 2);
        u.put_str(7, "ab");
        u.nest(3, |u| u.put(1, &[]));
        assert_eq!(u.0, [0, 4, 2, 0, 0, 0, 7, 3, b'a', b'b', 0, 3, 2, 1, 0]);
    }

    #[test]
    fn parses_an_error_with_extended_ack() {
        let mut m = Vec::new();
        let body_len = 16 + 4 + 16 + 8;
        m.extend_from_slice(&(body_len as u32).to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&(0x100u16 | NLM_F_ACK_TLVS).to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-2i32).to_ne_bytes());
        // our header: len, type, flags, seq 42, pid
        m.extend_from_slice(&100u32.to_ne_bytes());
        m.extend_from_slice(&0x0a06u16.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&42u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NLMSGERR_ATTR_OFFS.to_ne_bytes());
        m.extend_from_slice(&60u32.to_ne_bytes());
        let r = parse_replies(&m);
        assert_eq!(
            r,
            [Reply {
                ty: NLMSG_ERROR,
                seq: 42,
                error: -2,
                msg: None,
                offset: Some(60),
            }]
        );
    }
}
