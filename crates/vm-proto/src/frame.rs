//! The frame: a fixed 28-byte header followed by at most [`MAX_PAYLOAD`] bytes of payload.
//!
//! ```text
//! offset size field
//! 0      4    magic       b"VMC\x01"
//! 4      1    version     the version the payload is encoded in: 1, or 2 (MAX_VERSION) for
//!                         a Request or Deliver carrying its deadline
//! 5      1    kind        message kind
//! 6      2    flags       0 in every version
//! 8      8    id          request id (0 = not part of an exchange)
//! 16     4    len         payload length, <= MAX_PAYLOAD
//! 20     4    payload_crc CRC-32C of the payload
//! 24     4    header_crc  CRC-32C of bytes 0..24
//! 28     len  payload
//! ```
//!
//! All integers are big-endian. The magic and the two checksums exist so that a reader of a
//! character device, which may start in the middle of a frame (the peer restarted mid-write, or
//! the guest migrated), can find the next real frame start and never act on a torn frame.

use std::fmt;

use crate::{
    crc32c::crc32c,
    message::{Message, MessageError},
};

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"VMC\x01";

/// The oldest protocol version this crate speaks; also the version of every frame whose
/// payload is the same in all versions (Hello always: it is how versions are negotiated).
pub const MIN_VERSION: u8 = 1;

/// The newest protocol version this crate speaks, offered in every [`Hello`](crate::Hello)
/// it sends.
pub const MAX_VERSION: u8 = 2;

/// The version from which Request and Deliver carry `timeout_ms`, the requester's remaining
/// time (docs/protocol.md §5, §10). A sender uses it only towards a peer whose Hello offered
/// it.
pub const DEADLINE_VERSION: u8 = 2;

/// The version from which a daemon on a guest link carries byte streams (kinds 0x0F to 0x12,
/// docs/protocol.md §16). It changes no payload encoding and no frame header: stream frames
/// travel in version-1 frames, like every frame whose payload is the same in all versions. It
/// is only ever negotiated: the daemons offer it in their Hello on the guest link
/// ([`Hello::current_streams`](crate::Hello::current_streams)), and a peer whose Hello does not
/// offer it is never sent a stream frame.
pub const STREAM_VERSION: u8 = 3;

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 28;

/// Largest payload a frame may carry. A header announcing more is rejected before any payload
/// byte is buffered, so a length field can never make a reader allocate more than
/// [`MAX_FRAME`].
pub const MAX_PAYLOAD: usize = 65536;

/// Largest encoded frame.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD;

/// A message kind as carried in the header. Kinds this version does not define decode as
/// [`Kind::Unknown`] (the frame itself is sound), so a daemon can answer with an Error frame
/// and keep reading the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 0x01: first frame of every connection or link.
    Hello,
    /// 0x02: liveness probe, answered by [`Kind::Pong`].
    Ping,
    /// 0x03: answer to [`Kind::Ping`].
    Pong,
    /// 0x04: a client's request for a host service.
    Request,
    /// 0x05: a request as the host daemon hands it to a module.
    Deliver,
    /// 0x06: a module's answer.
    Reply,
    /// 0x07: "not done, try again", with a reason.
    Retry,
    /// 0x08: a request failed.
    Error,
    /// 0x09: a module offers a service (host local socket only).
    Register,
    /// 0x0A: admin asks a daemon for its status.
    Status,
    /// 0x0B: the status, as JSON text.
    StatusReply,
    /// 0x0C: the sender gives up on a request.
    Cancel,
    /// 0x0D: the host daemon asks the guest daemon on a guest link whether it still runs,
    /// answered by [`Kind::Alive`].
    Heartbeat,
    /// 0x0E: the guest daemon's answer to [`Kind::Heartbeat`], with its health.
    Alive,
    /// 0x0F: the host daemon opens a byte stream to the guest's local target (guest link).
    StreamOpen,
    /// 0x10: bytes of a stream, within the credit its receiver granted.
    StreamData,
    /// 0x11: the receiver of a stream grants its sender more bytes.
    StreamCredit,
    /// 0x12: a stream ends.
    StreamClose,
    /// 0x13: an admin tells the host daemon on which loopback port to offer a guest's stream
    /// (host local socket only).
    StreamExpose,
    /// 0x14: admin asks a host daemon for one page of its status (guest links after a
    /// cursor), answered by [`Kind::StatusReply`].
    StatusPage,
    /// Any other value. [`Kind::from_u8`] never returns this for a defined value.
    Unknown(u8),
}

impl Kind {
    /// The kind for a header byte; undefined values become [`Kind::Unknown`].
    pub fn from_u8(value: u8) -> Kind {
        match value {
            0x01 => Kind::Hello,
            0x02 => Kind::Ping,
            0x03 => Kind::Pong,
            0x04 => Kind::Request,
            0x05 => Kind::Deliver,
            0x06 => Kind::Reply,
            0x07 => Kind::Retry,
            0x08 => Kind::Error,
            0x09 => Kind::Register,
            0x0A => Kind::Status,
            0x0B => Kind::StatusReply,
            0x0C => Kind::Cancel,
            0x0D => Kind::Heartbeat,
            0x0E => Kind::Alive,
            0x0F => Kind::StreamOpen,
            0x10 => Kind::StreamData,
            0x11 => Kind::StreamCredit,
            0x12 => Kind::StreamClose,
            0x13 => Kind::StreamExpose,
            0x14 => Kind::StatusPage,
            other => Kind::Unknown(other),
        }
    }

    /// The header byte for this kind.
    pub fn to_u8(self) -> u8 {
        match self {
            Kind::Hello => 0x01,
            Kind::Ping => 0x02,
            Kind::Pong => 0x03,
            Kind::Request => 0x04,
            Kind::Deliver => 0x05,
            Kind::Reply => 0x06,
            Kind::Retry => 0x07,
            Kind::Error => 0x08,
            Kind::Register => 0x09,
            Kind::Status => 0x0A,
            Kind::StatusReply => 0x0B,
            Kind::Cancel => 0x0C,
            Kind::Heartbeat => 0x0D,
            Kind::Alive => 0x0E,
            Kind::StreamOpen => 0x0F,
            Kind::StreamData => 0x10,
            Kind::StreamCredit => 0x11,
            Kind::StreamClose => 0x12,
            Kind::StreamExpose => 0x13,
            Kind::StatusPage => 0x14,
            Kind::Unknown(other) => other,
        }
    }

    /// Whether a frame of this kind may carry `id`: Hello always uses 0, Error may use 0 (an
    /// error not tied to a request), every other kind belongs to an exchange and needs a
    /// non-zero id. Unknown kinds are not judged here.
    pub fn allows_id(self, id: u64) -> bool {
        match self {
            Kind::Hello => id == 0,
            Kind::Error | Kind::Unknown(_) => true,
            _ => id != 0,
        }
    }
}

impl From<u8> for Kind {
    fn from(value: u8) -> Kind {
        Kind::from_u8(value)
    }
}

impl From<Kind> for u8 {
    fn from(kind: Kind) -> u8 {
        kind.to_u8()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Kind::Hello => "Hello",
            Kind::Ping => "Ping",
            Kind::Pong => "Pong",
            Kind::Request => "Request",
            Kind::Deliver => "Deliver",
            Kind::Reply => "Reply",
            Kind::Retry => "Retry",
            Kind::Error => "Error",
            Kind::Register => "Register",
            Kind::Status => "Status",
            Kind::StatusReply => "StatusReply",
            Kind::Cancel => "Cancel",
            Kind::Heartbeat => "Heartbeat",
            Kind::Alive => "Alive",
            Kind::StreamOpen => "StreamOpen",
            Kind::StreamData => "StreamData",
            Kind::StreamCredit => "StreamCredit",
            Kind::StreamClose => "StreamClose",
            Kind::StreamExpose => "StreamExpose",
            Kind::StatusPage => "StatusPage",
            Kind::Unknown(value) => return write!(f, "unknown kind {value:#04x}"),
        };
        f.write_str(name)
    }
}

/// A payload longer than [`MAX_PAYLOAD`] was offered to [`Frame::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frame payload of {len} bytes exceeds the maximum of {MAX_PAYLOAD}")]
pub struct PayloadTooLong {
    /// Length of the rejected payload.
    pub len: usize,
}

/// One frame: a version, a kind, a request id and an opaque payload of at most
/// [`MAX_PAYLOAD`] bytes.
///
/// The fields are private so that every `Frame` in existence fits the wire format and
/// [`Frame::to_bytes`] cannot fail. Build one with [`Frame::new`] or
/// [`Message::to_frame`]; the [`Decoder`](crate::Decoder) yields only frames whose checksums
/// matched and whose version this crate speaks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    version: u8,
    kind: Kind,
    id: u64,
    payload: Vec<u8>,
}

impl Frame {
    /// A version-1 frame, if `payload` fits in one.
    pub fn new(kind: Kind, id: u64, payload: Vec<u8>) -> Result<Frame, PayloadTooLong> {
        if payload.len() > MAX_PAYLOAD {
            return Err(PayloadTooLong { len: payload.len() });
        }
        Ok(Frame {
            version: MIN_VERSION,
            kind,
            id,
            payload,
        })
    }

    /// For callers inside the crate that have already bounded the payload (messages are
    /// bounded by construction, the decoder by the header check) and chosen a version this
    /// crate speaks.
    pub(crate) fn from_checked(version: u8, kind: Kind, id: u64, payload: Vec<u8>) -> Frame {
        debug_assert!(payload.len() <= MAX_PAYLOAD);
        debug_assert!((MIN_VERSION..=MAX_VERSION).contains(&version));
        Frame {
            version,
            kind,
            id,
            payload,
        }
    }

    /// The version its payload is encoded in (the header's `version`).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// This frame with header version `version`, if this crate speaks it ([`MIN_VERSION`] to
    /// [`MAX_VERSION`]). (Messages choose their own version in
    /// [`Message::to_frame`]; this is for raw frames.)
    pub fn with_version(self, version: u8) -> Option<Frame> {
        (MIN_VERSION..=MAX_VERSION)
            .contains(&version)
            .then_some(Frame { version, ..self })
    }

    /// The message kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The request id (0 = not part of an exchange).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, giving up the frame.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Length of this frame on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// The frame's wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out
    }

    /// Appends the frame's wire bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Cannot truncate: the payload is at most MAX_PAYLOAD (65536) bytes by construction.
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out.reserve(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.push(self.version);
        out.push(self.kind.to_u8());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc32c(&self.payload).to_be_bytes());
        let header_crc = crc32c(&out[start..]);
        out.extend_from_slice(&header_crc.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// Decodes the payload as the message its kind names, in the frame's version, and checks
    /// the id rule ([`Kind::allows_id`]).
    pub fn message(&self) -> Result<Message, MessageError> {
        if !self.kind.allows_id(self.id) {
            return Err(MessageError::Id {
                kind: self.kind,
                id: self.id,
            });
        }
        Message::decode_in(self.version, self.kind, &self.payload)
    }
}

/// The frame's wire bytes: the same as [`Frame::to_bytes`].
pub fn encode(frame: &Frame) -> Vec<u8> {
    frame.to_bytes()
}

/// The validated fields of a header (everything but the payload, which is checked later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: u8,
    pub(crate) kind: Kind,
    pub(crate) id: u64,
    pub(crate) len: usize,
    pub(crate) payload_crc: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_bytes_round_trip() {
        for value in 0..=u8::MAX {
            let kind = Kind::from_u8(value);
            assert_eq!(kind.to_u8(), value);
            assert_eq!(
                matches!(kind, Kind::Unknown(_)),
                !(1..=0x14).contains(&value)
            );
        }
        assert_eq!(Kind::Unknown(0x42).to_string(), "unknown kind 0x42");
        assert_eq!(Kind::StatusReply.to_string(), "StatusReply");
    }

    #[test]
    fn empty_frame_bytes_are_pinned() {
        let frame = Frame::new(Kind::Ping, 0x0102_0304_0506_0708, Vec::new()).unwrap();
        let bytes = frame.to_bytes();
        let mut expected = vec![
            0x56, 0x4D, 0x43, 0x01, // magic
            0x01, // version
            0x02, // kind Ping
            0x00, 0x00, // flags
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // id
            0x00, 0x00, 0x00, 0x00, // len
            0x00, 0x00, 0x00, 0x00, // crc32c of nothing
        ];
        let header_crc = crc32c(&expected);
        expected.extend_from_slice(&header_crc.to_be_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), HEADER_LEN);
    }

    #[test]
    fn oversize_payload_is_refused() {
        assert_eq!(
            Frame::new(Kind::Reply, 1, vec![0; MAX_PAYLOAD + 1]),
            Err(PayloadTooLong {
                len: MAX_PAYLOAD + 1
            })
        );
        Frame::new(Kind::Reply, 1, vec![0; MAX_PAYLOAD]).unwrap();
    }

    #[test]
    fn id_rule() {
        assert!(Kind::Hello.allows_id(0));
        assert!(!Kind::Hello.allows_id(1));
        assert!(Kind::Error.allows_id(0));
        assert!(Kind::Error.allows_id(9));
        assert!(!Kind::Request.allows_id(0));
        assert!(Kind::Request.allows_id(9));
        let frame = Frame::new(Kind::Ping, 0, Vec::new()).unwrap();
        assert_eq!(
            frame.message(),
            Err(MessageError::Id {
                kind: Kind::Ping,
                id: 0
            })
        );
    }
}
