//! The netlink wire: a message builder over one flat buffer with back-patched
//! lengths, a bounds-checked reader for messages and attributes, and a socket
//! that matches replies to requests. Protocol-specific layers (`rtnl`, `nft`)
//! sit on top and hold their own constants.

pub mod socket;

pub use socket::Socket;

pub const NLMSG_HDRLEN: usize = 16;
pub const NLA_HDRLEN: usize = 4;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_ECHO: u16 = 0x8;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

const NLMSGERR_ATTR_MSG: u16 = 1;

pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message under construction. Integers are host order unless the
/// method name says `be`; addresses are passed as network-order bytes.
#[derive(Clone)]
pub struct MsgBuf {
    buf: Vec<u8>,
    /// An attribute longer than its 16-bit length field can say was added:
    /// the message is refused before it is sent (`check`), never wrapped.
    oversize: bool,
}

/// An open nested attribute; `MsgBuf::end` writes its length.
#[must_use]
pub struct Nest(usize);

/// A buffer kept for the next user. Requests are built and received one at
/// a time, and musl's allocator tends to map and unmap a fresh page for an
/// allocation freed as soon as it is made: a plugin call's dozen requests
/// each paid an mmap, a page fault and a munmap for their message. A second
/// user while the buffer is out (another thread) simply allocates.
pub(crate) struct Spare(std::sync::Mutex<Vec<u8>>);

impl Spare {
    pub(crate) const fn new() -> Spare {
        Spare(std::sync::Mutex::new(Vec::new()))
    }

    /// The buffer (as it was given back), or an empty one.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.0.try_lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// Keep `v` for the next `take`, unless a larger one is kept.
    pub(crate) fn give(&self, v: Vec<u8>) {
        if let Ok(mut kept) = self.0.try_lock() {
            if kept.capacity() < v.capacity() {
                *kept = v;
            }
        }
    }
}

/// The buffer requests are built in (see [`Spare`]): [`socket::Socket`]
/// gives each back once it is sent.
pub(crate) static MSG_SPARE: Spare = Spare::new();

impl MsgBuf {
    pub fn new(ty: u16, flags: u16) -> MsgBuf {
        let mut buf = MSG_SPARE.take();
        buf.clear();
        buf.reserve(256);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        MsgBuf { buf, oversize: false }
    }

    /// A fixed-size family header (ifinfomsg, rtmsg, nfgenmsg...), padded to 4.
    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }

    /// An attribute length for the 16-bit field, or 0 with the message marked oversize.
    fn attr_len(&mut self, len: usize) -> u16 {
        u16::try_from(len).unwrap_or_else(|_| {
            self.oversize = true;
            0
        })
    }

    /// Refuse a message holding an attribute too long for netlink (64 KiB),
    /// naming what it was for.
    pub fn check(&self, what: impl std::fmt::Display) -> crate::error::Result<()> {
        if self.oversize {
            return Err(crate::error::Error::msg(format!("{what}: a netlink attribute would exceed 65535 bytes")));
        }
        Ok(())
    }

    pub fn put(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = self.attr_len(NLA_HDRLEN + data.len());
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn put_u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.put(ty, &[v])
    }
    pub fn put_u16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }
    pub fn put_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }
    pub fn put_be16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }
    pub fn put_be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }
    pub fn put_be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }
    /// A NUL-terminated string, as the kernel's NLA_NUL_STRING/NLA_STRING expect.
    pub fn put_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let len = self.attr_len(NLA_HDRLEN + s.len() + 1);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
        self
    }

    pub fn nest(&mut self, ty: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        Nest(at)
    }

    pub fn end(&mut self, n: Nest) -> &mut Self {
        let len = self.attr_len(self.buf.len() - n.0);
        self.buf[n.0..n.0 + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    pub fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    /// The length of the message on the wire.
    pub fn wire_len(&self) -> usize {
        self.buf.len()
    }

    /// Append the finished message to `out`, leaving this one as it is
    /// (a batch is encoded into one buffer of the size it needs).
    pub fn finish_into(&self, seq: u32, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.buf);
        out[at..at + 4].copy_from_slice(&(self.buf.len() as u32).to_ne_bytes());
        out[at + 8..at + 12].copy_from_slice(&seq.to_ne_bytes());
    }

    /// The finished message with its length and sequence number written in.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// A received message: header fields and the payload after the 16-byte header.
#[derive(Clone, Copy)]
pub struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    pub payload: &'a [u8],
}

impl<'a> Msg<'a> {
    /// Attributes after a fixed family header of `hdr` bytes.
    pub fn attrs(&self, hdr: usize) -> Attrs<'a> {
        Attrs::new(self.payload.get(align4(hdr)..).unwrap_or(&[]))
    }

    /// For NLMSG_ERROR (and NLMSG_DONE of a dump): the negative errno, 0 for an ACK.
    pub fn error_code(&self) -> i32 {
        self.payload.get(0..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(-libc::EPROTO)
    }

    /// Sequence number of the request an NLMSG_ERROR answers.
    pub fn error_seq(&self) -> Option<u32> {
        self.payload.get(12..16).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The kernel's extended-ack text for an NLMSG_ERROR, if it sent one.
    pub fn ext_ack(&self) -> Option<&'a str> {
        if self.flags & NLM_F_ACK_TLVS == 0 {
            return None;
        }
        let orig_len = self.payload.get(4..8).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
        let skip = if self.flags & NLM_F_CAPPED != 0 { 4 + NLMSG_HDRLEN } else { 4 + align4(orig_len) };
        Attrs::new(self.payload.get(skip..)?).get(NLMSGERR_ATTR_MSG).map(|a| a.str())
    }
}

/// Iterate over the messages packed in one datagram. Stops at the first
/// malformed header instead of reading past it.
pub struct Msgs<'a> {
    data: &'a [u8],
}

impl<'a> Msgs<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Msgs { data }
    }
}

impl<'a> Iterator for Msgs<'a> {
    type Item = Msg<'a>;
    fn next(&mut self) -> Option<Msg<'a>> {
        let d = self.data;
        if d.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if len < NLMSG_HDRLEN || len > d.len() {
            self.data = &[];
            return None;
        }
        let m = Msg {
            ty: u16::from_ne_bytes([d[4], d[5]]),
            flags: u16::from_ne_bytes([d[6], d[7]]),
            seq: u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
            pid: u32::from_ne_bytes([d[12], d[13], d[14], d[15]]),
            payload: &d[NLMSG_HDRLEN..len],
        };
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some(m)
    }
}

/// One attribute: its type with the flag bits masked off, and its payload.
#[derive(Clone, Copy)]
pub struct Attr<'a> {
    pub ty: u16,
    pub nested: bool,
    pub data: &'a [u8],
}

impl<'a> Attr<'a> {
    pub fn u8(&self) -> u8 {
        self.data.first().copied().unwrap_or(0)
    }
    pub fn u16(&self) -> u16 {
        self.data.get(0..2).map(|b| u16::from_ne_bytes([b[0], b[1]])).unwrap_or(0)
    }
    pub fn u32(&self) -> u32 {
        self.data.get(0..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0)
    }
    pub fn be32(&self) -> u32 {
        self.data.get(0..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0)
    }
    pub fn be64(&self) -> u64 {
        self.data.get(0..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))).unwrap_or(0)
    }
    /// The string up to its NUL (some senders omit the NUL; both are accepted).
    pub fn str(&self) -> &'a str {
        let end = self.data.iter().position(|&c| c == 0).unwrap_or(self.data.len());
        std::str::from_utf8(&self.data[..end]).unwrap_or("")
    }
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.data)
    }
}

#[derive(Clone, Copy)]
pub struct Attrs<'a> {
    data: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Attrs { data }
    }

    /// The first attribute of type `ty`.
    pub fn get(self, ty: u16) -> Option<Attr<'a>> {
        let mut it = self;
        it.find(|a| a.ty == ty)
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;
    fn next(&mut self) -> Option<Attr<'a>> {
        let d = self.data;
        if d.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        let raw_ty = u16::from_ne_bytes([d[2], d[3]]);
        if len < NLA_HDRLEN || len > d.len() {
            self.data = &[];
            return None;
        }
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some(Attr { ty: raw_ty & NLA_TYPE_MASK, nested: raw_ty & NLA_F_NESTED != 0, data: &d[NLA_HDRLEN..len] })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An attribute header as this machine writes it (host byte order), for
    /// golden bytes that hold on either byte order.
    pub(crate) fn nla(len: u16, ty: u16) -> [u8; 4] {
        let mut h = [0; 4];
        h[..2].copy_from_slice(&len.to_ne_bytes());
        h[2..].copy_from_slice(&ty.to_ne_bytes());
        h
    }

    /// Golden bytes put together from their parts.
    pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn builder_pads_and_backpatches() {
        let mut m = MsgBuf::new(16, NLM_F_REQUEST | NLM_F_ACK);
        m.push(&[0u8; 16]);
        m.put_str(3, "eth0");
        let n = m.nest(18);
        m.put_str(1, "veth");
        m.end(n);
        let b = m.finish(7);
        assert_eq!(b.len(), 16 + 16 + 12 + 16);
        assert_eq!(&b[0..4], &(b.len() as u32).to_ne_bytes());
        assert_eq!(&b[8..12], &7u32.to_ne_bytes());
        // IFLA_IFNAME "eth0\0": len 9, padded to 12
        assert_eq!(&b[32..44], cat(&[&nla(9, 3), b"eth0\0\0\0\0"]));
        // nest length covers its child including padding
        assert_eq!(&b[44..48], &nla(16, 18));
        assert_eq!(&b[48..60], cat(&[&nla(9, 1), b"veth\0\0\0\0"]));
    }

    #[test]
    fn attr_iterator_bounds_and_flags() {
        // nested flag masked, unknown type skipped, truncated tail ignored
        let data = cat(&[&nla(8, 0x8001), &[1, 2, 3, 4], &nla(5, 9), &[7, 0, 0, 0], &nla(0xff, 1)]);
        let v: Vec<_> = Attrs::new(&data).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].ty, 1);
        assert!(v[0].nested);
        assert_eq!(v[1].ty, 9);
        assert_eq!(v[1].data, &[7]);
        // nla_len < 4 stops iteration
        assert_eq!(Attrs::new(&nla(2, 1)).count(), 0);
        // nla_len beyond buffer stops iteration
        assert_eq!(Attrs::new(&cat(&[&nla(40, 1), &[0, 0]])).count(), 0);
    }

    #[test]
    fn messages_split_and_truncation() {
        let a = MsgBuf::new(NLMSG_DONE, NLM_F_MULTI).finish(1);
        let mut b = MsgBuf::new(NLMSG_ERROR, 0);
        b.push(&(-17i32).to_ne_bytes());
        let b = b.finish(2);
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let v: Vec<_> = Msgs::new(&both).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].error_code(), -17);
        // a header claiming more than the datagram holds is dropped, not read past
        let mut bad = a.clone();
        bad[0] = 200;
        assert_eq!(Msgs::new(&bad).count(), 0);
    }

    #[test]
    fn ext_ack_text_is_found() {
        // NLMSG_ERROR, capped, with NLMSGERR_ATTR_MSG "bad thing"
        let mut m = MsgBuf::new(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        let mut p = (-22i32).to_ne_bytes().to_vec();
        p.extend_from_slice(&MsgBuf::new(16, 5).finish(3)); // the echoed request header
        m.push(&p);
        m.put_str(NLMSGERR_ATTR_MSG, "bad thing");
        let b = m.finish(3);
        let msg = Msgs::new(&b).next().unwrap();
        assert_eq!(msg.error_code(), -22);
        assert_eq!(msg.error_seq(), Some(3));
        assert_eq!(msg.ext_ack(), Some("bad thing"));
    }

    #[test]
    fn attributes_too_long_for_their_length_field_are_refused_not_wrapped() {
        let mut m = MsgBuf::new(16, NLM_F_REQUEST);
        m.put(1, &[0; 100]);
        assert!(m.check("small").is_ok());
        m.put(2, &vec![0; 65_532]);
        let e = m.check("link add").unwrap_err().to_string();
        assert!(e.contains("link add") && e.contains("65535"), "{e}");
        let mut n = MsgBuf::new(16, NLM_F_REQUEST);
        let nest = n.nest(3);
        for _ in 0..3 {
            n.put(1, &vec![0; 30_000]);
        }
        n.end(nest);
        assert!(n.check("nested").is_err(), "a nest over 64 KiB");
    }
}
