//! Messages: the typed payloads of frames, their encodings and their limits.
//!
//! Payload primitives: integers big-endian; a *string* is a u16 length followed by that many
//! bytes of UTF-8; *bytes* is a u32 length followed by that many bytes. Every string and byte
//! field has a maximum, checked before the bytes are looked at. Decoding rejects trailing
//! bytes, over-long or short fields, invalid UTF-8 and undefined enum values, with a
//! [`MessageError`] that names the field.
//!
//! Every payload type has private fields and a validating constructor, so a value that exists
//! can always be encoded: [`Message::encode`] cannot fail and never produces a payload longer
//! than [`MAX_PAYLOAD`](crate::MAX_PAYLOAD).
//!
//! Versions: version 2 ([`DEADLINE_VERSION`]) is version 1 with one field more, `timeout_ms`
//! ([`TimeoutMs`]) at the end of [`Request`] and [`Deliver`]. A message is encoded in the
//! lowest version that carries it ([`Message::version`]): a Request or Deliver with a deadline
//! in version 2, everything else in version 1; a payload is decoded in the version its frame
//! says ([`Message::decode_in`]).

use std::{fmt, str::FromStr};

use crate::{
    frame::{DEADLINE_VERSION, Frame, Kind, MAX_VERSION, MIN_VERSION, STREAM_VERSION},
    wire::{Reader, Writer, check_len},
};

/// Largest request, reply or status body. Leaves room in a [`MAX_PAYLOAD`](crate::MAX_PAYLOAD)
/// frame for the largest [`Deliver`] envelope around it.
pub const MAX_BODY: usize = 60 * 1024;
/// Longest service name.
pub const MAX_SERVICE_LEN: usize = 32;
/// Longest [`Hello`] software string.
pub const MAX_SOFTWARE_LEN: usize = 64;
/// Longest host name in a [`Pong`].
pub const MAX_HOST_LEN: usize = 255;
/// Most services a [`Pong`] lists.
pub const MAX_SERVICES: usize = 32;
/// Longest domain name in an [`Origin`].
pub const MAX_DOMAIN_LEN: usize = 255;
/// Length of a textual UUID (the only non-empty length an [`Origin`] uuid may have).
pub const UUID_LEN: usize = 36;
/// Longest [`Retry`] detail.
pub const MAX_DETAIL_LEN: usize = 255;
/// Longest [`ErrorMsg`] message.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Most bytes one [`StreamData`] carries. Small enough that a frame of the guest link's control
/// traffic (a fence request's reply, a heartbeat) waits behind at most one of them at each
/// writer (docs/protocol.md §16.4).
pub const MAX_STREAM_CHUNK: usize = 16 * 1024;
/// Largest window a [`StreamOpen`] or [`StreamCredit`] may grant: a receiver never buffers
/// more than this per stream.
pub const MAX_STREAM_WINDOW: u32 = 1024 * 1024;
/// Most failing checks an [`Alive`] lists.
pub const MAX_FAILING_CHECKS: usize = 8;
/// Longest health check name in an [`Alive`].
pub const MAX_CHECK_NAME_LEN: usize = 64;
/// Longest `timeout_ms` a Request or Deliver may carry: a day, as a sealed fence request's own
/// timeout (vm-seal).
pub const MAX_TIMEOUT_MS: u32 = 86_400_000;

/// What this crate's users put in [`Hello::software`].
pub const SOFTWARE: &str = concat!("pm-kvm-tools ", env!("CARGO_PKG_VERSION"));

/// A payload that is not exactly as specified, or a value a constructor refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The frame's kind is not defined in this protocol version.
    #[error(
        "message kind {0:#04x} is not defined in protocol versions {MIN_VERSION} to {MAX_VERSION}"
    )]
    UnknownKind(u8),
    /// A payload was to be decoded in a version this crate does not speak (the decoder never
    /// yields such a frame; a caller of [`Message::decode_in`] may ask).
    #[error(
        "protocol version {0} is not supported (this side speaks versions {MIN_VERSION} to {MAX_VERSION})"
    )]
    Version(u8),
    /// A `timeout_ms` outside `1..=MAX_TIMEOUT_MS` (0 is not a deadline).
    #[error("{field} is {value} ms, which is not within 1 to {MAX_TIMEOUT_MS} ms")]
    Timeout {
        /// The field.
        field: &'static str,
        /// The value received.
        value: u32,
    },
    /// The frame's id breaks the id rule ([`Kind::allows_id`]).
    #[error(
        "a {kind} frame may not carry id {id} (Hello uses 0, requests and their answers a \
         non-zero id)"
    )]
    Id {
        /// Kind of the frame.
        kind: Kind,
        /// Its id.
        id: u64,
    },
    /// The payload ends inside a field.
    #[error("{field} is cut short: {needed} bytes needed, {left} left in the payload")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        left: usize,
    },
    /// A string, byte string or list is longer than its field allows.
    #[error("{field} is {len} long, more than the maximum of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its (announced) length, in bytes or items.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A string is shorter than its field allows (typically: empty).
    #[error("{field} is {len} long, less than the minimum of {min}")]
    TooShort {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// An enumerated field carries an undefined value.
    #[error("{field} has the value {value}, which is not defined")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value received.
        value: u16,
    },
    /// A service name has characters outside `[a-z0-9_.-]`.
    #[error("{field} {name:?} is not a service name (1 to 32 bytes of a-z, 0-9, '_', '.', '-')")]
    ServiceName {
        /// The field.
        field: &'static str,
        /// The name received (at most 32 bytes: longer names fail as `TooLong` first).
        name: String,
    },
    /// A domain UUID is neither empty nor in the 8-4-4-4-12 hex form.
    #[error("{field} {value:?} is neither empty nor a UUID (8-4-4-4-12 hex digits)")]
    Uuid {
        /// The field.
        field: &'static str,
        /// The value received (at most 36 bytes).
        value: String,
    },
    /// A health check name in an [`Alive`] has a byte outside its alphabet.
    #[error(
        "{field} {name:?} is not a health check name (1 to 64 bytes of letters, digits, '@', \
         ':', '_', '.', '-', '\\')"
    )]
    CheckName {
        /// The field.
        field: &'static str,
        /// The name received (at most 64 bytes: longer names fail as `TooLong` first).
        name: String,
    },
    /// A Hello's version range is empty or starts at 0.
    #[error("Hello offers versions {min} to {max}, which is not a range of versions")]
    VersionRange {
        /// `min_version` received.
        min: u8,
        /// `max_version` received.
        max: u8,
    },
    /// A value that must be at least 1 is 0, or one above its maximum.
    #[error("{field} is {value}, which is not within 1 to {max}")]
    Range {
        /// The field.
        field: &'static str,
        /// The value received.
        value: u32,
        /// The maximum.
        max: u32,
    },
    /// Bytes follow the last field.
    #[error("{count} bytes follow the end of the {kind} payload")]
    TrailingBytes {
        /// Kind of the message.
        kind: Kind,
        /// How many bytes were left over.
        count: usize,
    },
}

/// Defines a wire enum: the variants, their wire values, conversions and display text.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident: $repr:ty, $from:ident, $to:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, $text:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in wire-value order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The variant with this wire value, if it is defined.
            pub fn $from(value: $repr) -> Option<$name> {
                match value {
                    $( $value => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The wire value.
            pub fn $to(self) -> $repr {
                match self {
                    $( $name::$variant => $value, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $( $name::$variant => $text, )+
                })
            }
        }
    };
}

wire_enum! {
    /// Who sent a [`Hello`].
    Role: u8, from_u8, to_u8 {
        /// vm-connectd on a host.
        HostDaemon = 1, "host daemon";
        /// vm-connectd in a guest.
        GuestDaemon = 2, "guest daemon";
        /// A client: vm-connect, a fence agent, an admin tool.
        Client = 3, "client";
        /// A host module serving requests (vm-stonithd, ...).
        Module = 4, "module";
    }
}

wire_enum! {
    /// How the host daemon knows which guest a [`Deliver`] came from.
    OriginSource: u8, from_u8, to_u8 {
        /// libvirt said which domain owns the channel socket.
        Libvirt = 1, "libvirt";
        /// Derived from the channel socket's file name: the host daemon runs without libvirt
        /// (`--no-libvirt`), so whoever can create a file in its socket directory can name
        /// itself.
        SocketName = 2, "socket name";
        /// Named by the operator for this one socket (`--guest NAME=SOCKET`): a channel that
        /// libvirt does not manage.
        Configured = 3, "operator mapping";
    }
}

wire_enum! {
    /// Why a daemon answered [`Retry`]: the request was not carried out *by this attempt* and
    /// may succeed if sent again.
    RetryReason: u8, from_u8, to_u8 {
        /// The host side changed (migration, host daemon restart) while the request was in
        /// flight: it may have been lost, or carried out by the old host.
        LinkChanged = 1, "the host side changed";
        /// Nothing serves that service on the host right now.
        NoModule = 2, "no module serves the service";
        /// Too many requests in flight.
        Busy = 3, "too many requests in flight";
        /// The guest daemon has no host link right now.
        NoHost = 4, "no host link";
    }
}

wire_enum! {
    /// Why a request failed, in an [`ErrorMsg`].
    ErrorCode: u16, from_u16, to_u16 {
        /// The request is malformed or not allowed in this state; sending it again will not
        /// help.
        BadRequest = 1, "bad request";
        /// The module did not answer in time; whether it acted is unknown.
        Timeout = 2, "timeout";
        /// The sender may not ask for this.
        Forbidden = 3, "forbidden";
        /// The daemon or module failed.
        Internal = 4, "internal error";
        /// Unknown kind, version or feature.
        Unsupported = 5, "unsupported";
    }
}

/// The highest protocol version both ranges (`(min, max)`, inclusive) contain, or `None` if
/// they do not overlap. Version 0 does not exist, so a range starting at 0 only counts from 1.
pub fn negotiate(ours: (u8, u8), theirs: (u8, u8)) -> Option<u8> {
    let low = ours.0.max(theirs.0).max(1);
    let high = ours.1.min(theirs.1);
    (low <= high).then_some(high)
}

/// A service name: 1 to [`MAX_SERVICE_LEN`] bytes of `[a-z0-9_.-]`. Checked on construction
/// so that a name from a peer can be logged and used as a map key without further care.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    /// A service name, if `name` is one.
    pub fn new(name: impl Into<String>) -> Result<ServiceName, MessageError> {
        let name = name.into();
        Self::check("service name", &name)?;
        Ok(ServiceName(name))
    }

    fn check(field: &'static str, name: &str) -> Result<(), MessageError> {
        check_len(field, name.len(), 1, MAX_SERVICE_LEN)?;
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b);
        if !name.bytes().all(allowed) {
            return Err(MessageError::ServiceName {
                field,
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>, field: &'static str) -> Result<ServiceName, MessageError> {
        let name = r.str(field, 1, MAX_SERVICE_LEN)?;
        Self::check(field, name)?;
        Ok(ServiceName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ServiceName {
    type Err = MessageError;

    fn from_str(s: &str) -> Result<ServiceName, MessageError> {
        ServiceName::new(s)
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Reads a one-byte enumerated field.
fn read_enum<T>(
    r: &mut Reader<'_>,
    field: &'static str,
    from: fn(u8) -> Option<T>,
) -> Result<T, MessageError> {
    let value = r.u8(field)?;
    from(value).ok_or(MessageError::OutOfRange {
        field,
        value: u16::from(value),
    })
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
fn truncate_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Checks a body length for a constructor.
fn check_body(field: &'static str, body: &[u8]) -> Result<(), MessageError> {
    check_len(field, body.len(), 0, MAX_BODY)
}

/// 0x01: sent first by every peer, once per connection or link. Payload:
/// `u8 min_version, u8 max_version, u8 role, u64 session, string software (<= 64)`. Id 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hello {
    min_version: u8,
    max_version: u8,
    role: Role,
    session: u64,
    software: String,
}

impl Hello {
    /// A Hello offering versions `min_version..=max_version` (1 <= min <= max).
    pub fn new(
        min_version: u8,
        max_version: u8,
        role: Role,
        session: u64,
        software: impl Into<String>,
    ) -> Result<Hello, MessageError> {
        let software = software.into();
        if min_version == 0 || min_version > max_version {
            return Err(MessageError::VersionRange {
                min: min_version,
                max: max_version,
            });
        }
        check_len("Hello.software", software.len(), 0, MAX_SOFTWARE_LEN)?;
        Ok(Hello {
            min_version,
            max_version,
            role,
            session,
            software,
        })
    }

    /// The Hello the daemons send on a guest link: versions [`MIN_VERSION`] to
    /// [`STREAM_VERSION`] (they carry streams, docs/protocol.md §16), software [`SOFTWARE`].
    pub fn current_streams(role: Role, session: u64) -> Hello {
        Hello {
            max_version: STREAM_VERSION,
            ..Hello::current(role, session)
        }
    }

    /// The Hello this crate sends: versions [`MIN_VERSION`] to [`MAX_VERSION`], software
    /// [`SOFTWARE`].
    pub fn current(role: Role, session: u64) -> Hello {
        Hello {
            min_version: MIN_VERSION,
            max_version: MAX_VERSION,
            role,
            session,
            // A crate version string; the unit tests check it fits MAX_SOFTWARE_LEN.
            software: SOFTWARE.to_owned(),
        }
    }

    /// Lowest version the sender speaks.
    pub fn min_version(&self) -> u8 {
        self.min_version
    }

    /// Highest version the sender speaks.
    pub fn max_version(&self) -> u8 {
        self.max_version
    }

    /// `(min_version, max_version)`, as [`negotiate`] takes it.
    pub fn versions(&self) -> (u8, u8) {
        (self.min_version, self.max_version)
    }

    /// The version to speak with the sender of this Hello: the highest both this crate and it
    /// speak, `None` if there is none.
    pub fn negotiated(&self) -> Option<u8> {
        negotiate((MIN_VERSION, STREAM_VERSION), self.versions())
    }

    /// What the sender is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Random per connection or link: a new value on a link means a new peer behind it.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Free-form name and version of the sender's software, for logs.
    pub fn software(&self) -> &str {
        &self.software
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(self.min_version)
            .u8(self.max_version)
            .u8(self.role.to_u8())
            .u64(self.session)
            .str(&self.software);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Hello, MessageError> {
        let min_version = r.u8("Hello.min_version")?;
        let max_version = r.u8("Hello.max_version")?;
        if min_version == 0 || min_version > max_version {
            return Err(MessageError::VersionRange {
                min: min_version,
                max: max_version,
            });
        }
        let role = read_enum(r, "Hello.role", Role::from_u8)?;
        let session = r.u64("Hello.session")?;
        let software = r.str("Hello.software", 0, MAX_SOFTWARE_LEN)?.to_owned();
        Ok(Hello {
            min_version,
            max_version,
            role,
            session,
            software,
        })
    }
}

/// 0x03: answer to a Ping, from the host daemon. Payload: `string host (<= 255), u8 count,
/// count x string service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pong {
    host: String,
    services: Vec<ServiceName>,
}

impl Pong {
    /// A Pong naming the host and the services registered on it (at most [`MAX_SERVICES`]).
    pub fn new(host: impl Into<String>, services: Vec<ServiceName>) -> Result<Pong, MessageError> {
        let host = host.into();
        check_len("Pong.host", host.len(), 0, MAX_HOST_LEN)?;
        check_len("Pong.services", services.len(), 0, MAX_SERVICES)?;
        Ok(Pong { host, services })
    }

    /// The host's name (its cluster node name).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The services registered on the host.
    pub fn services(&self) -> &[ServiceName] {
        &self.services
    }

    fn encode(&self, w: &mut Writer) {
        w.str(&self.host);
        // At most MAX_SERVICES (32), checked by the constructor.
        w.u8(u8::try_from(self.services.len()).unwrap_or(u8::MAX));
        for service in &self.services {
            w.str(service.as_str());
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Pong, MessageError> {
        let host = r.str("Pong.host", 0, MAX_HOST_LEN)?.to_owned();
        let count = usize::from(r.u8("Pong.count")?);
        check_len("Pong.services", count, 0, MAX_SERVICES)?;
        let services = (0..count)
            .map(|_| ServiceName::read(r, "Pong.service"))
            .collect::<Result<_, _>>()?;
        Ok(Pong { host, services })
    }
}

/// A requester's remaining time, as Request and Deliver carry it from version 2 on (`u32
/// timeout_ms`): 1 to [`MAX_TIMEOUT_MS`] milliseconds. Each hop bounds the request by it (less
/// what has passed since the request arrived there) and passes on what is left. It is not
/// authenticated: a hop may shorten it, and a receiver trusts it only to give up sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeoutMs(u32);

impl TimeoutMs {
    /// `ms` milliseconds, if within `1..=MAX_TIMEOUT_MS`.
    pub fn new(ms: u32) -> Result<TimeoutMs, MessageError> {
        Self::check("timeout_ms", ms)
    }

    fn check(field: &'static str, ms: u32) -> Result<TimeoutMs, MessageError> {
        if (1..=MAX_TIMEOUT_MS).contains(&ms) {
            Ok(TimeoutMs(ms))
        } else {
            Err(MessageError::Timeout { field, value: ms })
        }
    }

    /// `left`, in whole milliseconds (rounded down) and at most [`MAX_TIMEOUT_MS`]; `None`
    /// when less than a millisecond is left (no deadline that still allows anything).
    pub fn from_duration(left: std::time::Duration) -> Option<TimeoutMs> {
        let ms = left.as_millis().min(u128::from(MAX_TIMEOUT_MS));
        // (at most MAX_TIMEOUT_MS, so it fits)
        let ms = u32::try_from(ms).unwrap_or(MAX_TIMEOUT_MS);
        (ms >= 1).then_some(TimeoutMs(ms))
    }

    /// The milliseconds.
    pub fn as_millis(self) -> u32 {
        self.0
    }

    /// As a duration.
    pub fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.0))
    }

    fn read(r: &mut Reader<'_>, field: &'static str) -> Result<TimeoutMs, MessageError> {
        Self::check(field, r.u32(field)?)
    }
}

impl fmt::Display for TimeoutMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// Reads the version-2 `timeout_ms` of a Request or Deliver decoded in `version`: required
/// from [`DEADLINE_VERSION`] on, absent before.
fn read_timeout(
    r: &mut Reader<'_>,
    version: u8,
    field: &'static str,
) -> Result<Option<TimeoutMs>, MessageError> {
    if version >= DEADLINE_VERSION {
        TimeoutMs::read(r, field).map(Some)
    } else {
        Ok(None)
    }
}

/// 0x04: a client's request. Payload: `string service, bytes body (<= MAX_BODY)`, and from
/// version 2 on `u32 timeout_ms` ([`TimeoutMs`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    service: ServiceName,
    body: Vec<u8>,
    timeout: Option<TimeoutMs>,
}

impl Request {
    /// A request for `service` with `body` (at most [`MAX_BODY`] bytes), without a deadline
    /// (encoded in version 1: each hop bounds it by its own fixed limit).
    pub fn new(service: ServiceName, body: impl Into<Vec<u8>>) -> Result<Request, MessageError> {
        let body = body.into();
        check_body("Request.body", &body)?;
        Ok(Request {
            service,
            body,
            timeout: None,
        })
    }

    /// This request carrying the requester's remaining time `timeout` (`None`: none), so
    /// that it is encoded in version 2. Only for a peer whose Hello offered version 2.
    pub fn with_timeout(self, timeout: Option<TimeoutMs>) -> Request {
        Request { timeout, ..self }
    }

    /// The requester's remaining time, when the request carries one (version 2).
    pub fn timeout(&self) -> Option<TimeoutMs> {
        self.timeout
    }

    /// The service asked for.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The request body (opaque to the daemons).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, giving up the request.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    fn encode(&self, w: &mut Writer) {
        w.str(self.service.as_str()).bytes(&self.body);
        if let Some(t) = self.timeout {
            w.u32(t.as_millis());
        }
    }

    fn decode(r: &mut Reader<'_>, version: u8) -> Result<Request, MessageError> {
        let service = ServiceName::read(r, "Request.service")?;
        let body = r.bytes("Request.body", MAX_BODY)?.to_vec();
        let timeout = read_timeout(r, version, "Request.timeout_ms")?;
        Ok(Request {
            service,
            body,
            timeout,
        })
    }
}

/// Where a delivered request came from, as established by the host daemon from the link it
/// arrived on (never from anything the guest sent). Encoded as `string domain (1..=255),
/// string uuid (empty or 36), u8 source`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    domain: String,
    uuid: String,
    source: OriginSource,
}

impl Origin {
    /// An origin: the libvirt domain name, its UUID (`""` when unknown, else the 36-character
    /// 8-4-4-4-12 hex form), and how the host daemon knows.
    pub fn new(
        domain: impl Into<String>,
        uuid: impl Into<String>,
        source: OriginSource,
    ) -> Result<Origin, MessageError> {
        let domain = domain.into();
        let uuid = uuid.into();
        check_len("Origin.domain", domain.len(), 1, MAX_DOMAIN_LEN)?;
        check_len("Origin.uuid", uuid.len(), 0, UUID_LEN)?;
        Self::check_uuid(&uuid)?;
        Ok(Origin {
            domain,
            uuid,
            source,
        })
    }

    fn check_uuid(uuid: &str) -> Result<(), MessageError> {
        let well_formed = uuid.is_empty()
            || (uuid.len() == UUID_LEN
                && uuid.bytes().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => b.is_ascii_hexdigit(),
                }));
        if well_formed {
            Ok(())
        } else {
            Err(MessageError::Uuid {
                field: "Origin.uuid",
                value: uuid.to_owned(),
            })
        }
    }

    /// The libvirt domain name of the guest.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain's UUID, or `""` when the host daemon does not know it.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// How the host daemon identified the guest.
    pub fn source(&self) -> OriginSource {
        self.source
    }

    fn encode(&self, w: &mut Writer) {
        w.str(&self.domain).str(&self.uuid).u8(self.source.to_u8());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Origin, MessageError> {
        let domain = r.str("Origin.domain", 1, MAX_DOMAIN_LEN)?.to_owned();
        let uuid = r.str("Origin.uuid", 0, UUID_LEN)?.to_owned();
        Self::check_uuid(&uuid)?;
        let source = read_enum(r, "Origin.source", OriginSource::from_u8)?;
        Ok(Origin {
            domain,
            uuid,
            source,
        })
    }
}

/// 0x05: a request as the host daemon hands it to the module serving it. Payload:
/// `Origin, string service, bytes body`, and from version 2 on `u32 timeout_ms`
/// ([`TimeoutMs`]). The id is assigned by the host daemon.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Deliver {
    origin: Origin,
    service: ServiceName,
    body: Vec<u8>,
    timeout: Option<TimeoutMs>,
}

impl Deliver {
    /// A delivery of `body` for `service` from `origin`, without a deadline (version 1).
    pub fn new(
        origin: Origin,
        service: ServiceName,
        body: impl Into<Vec<u8>>,
    ) -> Result<Deliver, MessageError> {
        let body = body.into();
        check_body("Deliver.body", &body)?;
        Ok(Deliver {
            origin,
            service,
            body,
            timeout: None,
        })
    }

    /// This delivery carrying the time the host daemon still waits for the answer (`None`:
    /// none), so that it is encoded in version 2. Only for a module whose Hello offered it.
    pub fn with_timeout(self, timeout: Option<TimeoutMs>) -> Deliver {
        Deliver { timeout, ..self }
    }

    /// The time the host daemon still waits for the answer, when the delivery carries one
    /// (version 2): the module should answer within it.
    pub fn timeout(&self) -> Option<TimeoutMs> {
        self.timeout
    }

    /// The guest the request came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The service asked for.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The request body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, giving up the delivery.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    fn encode(&self, w: &mut Writer) {
        self.origin.encode(w);
        w.str(self.service.as_str()).bytes(&self.body);
        if let Some(t) = self.timeout {
            w.u32(t.as_millis());
        }
    }

    fn decode(r: &mut Reader<'_>, version: u8) -> Result<Deliver, MessageError> {
        let origin = Origin::decode(r)?;
        let service = ServiceName::read(r, "Deliver.service")?;
        let body = r.bytes("Deliver.body", MAX_BODY)?.to_vec();
        let timeout = read_timeout(r, version, "Deliver.timeout_ms")?;
        Ok(Deliver {
            origin,
            service,
            body,
            timeout,
        })
    }
}

/// 0x06: a module's answer, relayed back to the client. Payload: `bytes body`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    body: Vec<u8>,
}

impl Reply {
    /// A reply carrying `body` (at most [`MAX_BODY`] bytes).
    pub fn new(body: impl Into<Vec<u8>>) -> Result<Reply, MessageError> {
        let body = body.into();
        check_body("Reply.body", &body)?;
        Ok(Reply { body })
    }

    /// The reply body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, giving up the reply.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    fn decode(r: &mut Reader<'_>) -> Result<Reply, MessageError> {
        Ok(Reply {
            body: r.bytes("Reply.body", MAX_BODY)?.to_vec(),
        })
    }
}

/// 0x07: "not done; send it again". Payload: `u8 reason, string detail (<= 255)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Retry {
    reason: RetryReason,
    detail: String,
}

impl Retry {
    /// A Retry with a detail of at most [`MAX_DETAIL_LEN`] bytes.
    pub fn new(reason: RetryReason, detail: impl Into<String>) -> Result<Retry, MessageError> {
        let detail = detail.into();
        check_len("Retry.detail", detail.len(), 0, MAX_DETAIL_LEN)?;
        Ok(Retry { reason, detail })
    }

    /// A Retry whose detail is cut (at a character boundary) to fit: for daemons that put
    /// arbitrary text there and must not fail to answer because of it.
    pub fn truncated(reason: RetryReason, detail: &str) -> Retry {
        Retry {
            reason,
            detail: truncate_str(detail, MAX_DETAIL_LEN).to_owned(),
        }
    }

    /// Why.
    pub fn reason(&self) -> RetryReason {
        self.reason
    }

    /// Free text for the log.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(self.reason.to_u8()).str(&self.detail);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Retry, MessageError> {
        let reason = read_enum(r, "Retry.reason", RetryReason::from_u8)?;
        let detail = r.str("Retry.detail", 0, MAX_DETAIL_LEN)?.to_owned();
        Ok(Retry { reason, detail })
    }
}

/// 0x08: a request failed. Payload: `u16 code, string message (<= 1024)`. Id 0 when the
/// error is not about one request (the connection as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorMsg {
    code: ErrorCode,
    message: String,
}

impl ErrorMsg {
    /// An error with a message of at most [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Result<ErrorMsg, MessageError> {
        let message = message.into();
        check_len("Error.message", message.len(), 0, MAX_ERROR_MESSAGE_LEN)?;
        Ok(ErrorMsg { code, message })
    }

    /// An error whose message is cut (at a character boundary) to fit.
    pub fn truncated(code: ErrorCode, message: &str) -> ErrorMsg {
        ErrorMsg {
            code,
            message: truncate_str(message, MAX_ERROR_MESSAGE_LEN).to_owned(),
        }
    }

    /// What kind of failure.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Human-readable explanation.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn encode(&self, w: &mut Writer) {
        w.u16(self.code.to_u16()).str(&self.message);
    }

    fn decode(r: &mut Reader<'_>) -> Result<ErrorMsg, MessageError> {
        let value = r.u16("Error.code")?;
        let code = ErrorCode::from_u16(value).ok_or(MessageError::OutOfRange {
            field: "Error.code",
            value,
        })?;
        let message = r.str("Error.message", 0, MAX_ERROR_MESSAGE_LEN)?.to_owned();
        Ok(ErrorMsg { code, message })
    }
}

/// 0x09: a module offers a service (host local socket only). Payload: `string service`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Register {
    service: ServiceName,
}

impl Register {
    /// A registration for `service`.
    pub fn new(service: ServiceName) -> Register {
        Register { service }
    }

    /// The service offered.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    fn decode(r: &mut Reader<'_>) -> Result<Register, MessageError> {
        Ok(Register {
            service: ServiceName::read(r, "Register.service")?,
        })
    }
}

/// 0x0B: a daemon's status. Payload: `bytes body`, UTF-8 JSON whose shape the daemon defines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusReply {
    json: String,
}

impl StatusReply {
    /// A status reply of at most [`MAX_BODY`] bytes of JSON text.
    pub fn new(json: impl Into<String>) -> Result<StatusReply, MessageError> {
        let json = json.into();
        check_body("StatusReply.body", json.as_bytes())?;
        Ok(StatusReply { json })
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The JSON text, giving up the reply.
    pub fn into_json(self) -> String {
        self.json
    }

    fn decode(r: &mut Reader<'_>) -> Result<StatusReply, MessageError> {
        let body = r.bytes("StatusReply.body", MAX_BODY)?;
        let json = std::str::from_utf8(body).map_err(|_| MessageError::InvalidUtf8 {
            field: "StatusReply.body",
        })?;
        Ok(StatusReply {
            json: json.to_owned(),
        })
    }
}

/// 0x0A with a payload: an admin asks a host daemon for the status of one guest link only.
/// Payload: `string guest` (1..=[`MAX_DOMAIN_LEN`], the domain name); an empty Status payload is
/// [`Message::Status`], the whole status. The answer is a [`StatusReply`] whose `guests` list
/// has at most that guest: it stays small however many guests the host runs (the whole status
/// of some hundred guests exceeds [`MAX_BODY`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusQuery {
    guest: String,
}

impl StatusQuery {
    /// The status of guest `guest` (1..=[`MAX_DOMAIN_LEN`] bytes).
    pub fn new(guest: impl Into<String>) -> Result<StatusQuery, MessageError> {
        let guest = guest.into();
        check_len("Status.guest", guest.len(), 1, MAX_DOMAIN_LEN)?;
        Ok(StatusQuery { guest })
    }

    /// The guest asked about.
    pub fn guest(&self) -> &str {
        &self.guest
    }

    fn decode(r: &mut Reader<'_>) -> Result<StatusQuery, MessageError> {
        Ok(StatusQuery {
            guest: r.str("Status.guest", 1, MAX_DOMAIN_LEN)?.to_owned(),
        })
    }
}

/// 0x14: an admin asks a host daemon for one page of its status: the guest links whose domain
/// name sorts (bytewise) after `after`, from the first when it is empty, as many whole domains
/// as fit one [`StatusReply`]. Payload: `string after` (0..=[`MAX_DOMAIN_LEN`]). The reply's
/// JSON says where the next page starts (`next`, the last domain it has; absent on the last
/// page), so a status of any number of guests is read one bounded page at a time, and guests
/// that come or go between pages are neither repeated nor shifted (docs/protocol.md §15.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusPage {
    after: String,
}

impl StatusPage {
    /// The page after domain `after` (0..=[`MAX_DOMAIN_LEN`] bytes; empty: the first page).
    pub fn new(after: impl Into<String>) -> Result<StatusPage, MessageError> {
        let after = after.into();
        check_len("StatusPage.after", after.len(), 0, MAX_DOMAIN_LEN)?;
        Ok(StatusPage { after })
    }

    /// The domain the page starts after (empty: the first page).
    pub fn after(&self) -> &str {
        &self.after
    }

    fn decode(r: &mut Reader<'_>) -> Result<StatusPage, MessageError> {
        Ok(StatusPage {
            after: r.str("StatusPage.after", 0, MAX_DOMAIN_LEN)?.to_owned(),
        })
    }
}

/// Whether `name` is a health check name: 1..=[`MAX_CHECK_NAME_LEN`] bytes of ASCII letters,
/// digits and `@ : _ . - \` (a systemd unit name's alphabet; a health command is named by its
/// file name, which the guest daemon checks against the same rule).
pub fn is_check_name(name: &str) -> bool {
    (1..=MAX_CHECK_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@:_.-\\".contains(&b))
}

/// 0x0E: the guest daemon's answer to a Heartbeat (same id). Payload: `u8 count`
/// (≤ [`MAX_FAILING_CHECKS`]), then `count` strings: the names of the guest's health checks
/// that are failing (each failed its configured number of consecutive times; in the order
/// the guest daemon was given them, no name twice). An empty list: healthy, or no checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Alive {
    failing: Vec<String>,
}

impl Alive {
    /// An answer listing `failing` checks (at most [`MAX_FAILING_CHECKS`], each a
    /// [`is_check_name`], no duplicates).
    pub fn new(failing: Vec<String>) -> Result<Alive, MessageError> {
        Self::check(&failing)?;
        Ok(Alive { failing })
    }

    fn check(failing: &[String]) -> Result<(), MessageError> {
        check_len("Alive.failing", failing.len(), 0, MAX_FAILING_CHECKS)?;
        for (i, name) in failing.iter().enumerate() {
            check_len("Alive.check", name.len(), 1, MAX_CHECK_NAME_LEN)?;
            if !is_check_name(name) || failing[..i].contains(name) {
                return Err(MessageError::CheckName {
                    field: "Alive.check",
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The failing checks (empty: healthy).
    pub fn failing(&self) -> &[String] {
        &self.failing
    }

    fn encode(&self, w: &mut Writer) {
        // At most MAX_FAILING_CHECKS (8), checked by the constructor.
        w.u8(u8::try_from(self.failing.len()).unwrap_or(u8::MAX));
        for name in &self.failing {
            w.str(name);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Alive, MessageError> {
        let count = usize::from(r.u8("Alive.count")?);
        check_len("Alive.failing", count, 0, MAX_FAILING_CHECKS)?;
        let failing = (0..count)
            .map(|_| {
                r.str("Alive.check", 1, MAX_CHECK_NAME_LEN)
                    .map(str::to_owned)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::check(&failing)?;
        Ok(Alive { failing })
    }
}

wire_enum! {
    /// Why a stream ended, in a [`StreamClose`].
    StreamCloseReason: u8, from_u8, to_u8 {
        /// The sender's end of the byte stream closed (its TCP connection ended or failed).
        Closed = 1, "the connection closed";
        /// The guest could not open the stream: its target did not accept a connection, or
        /// the guest daemon does not offer streams.
        Refused = 2, "the stream was refused";
        /// The guest already has as many streams open as it allows.
        Limit = 3, "too many streams";
        /// The peer broke the stream rules (data beyond its credit, a credit beyond the
        /// window, a StreamOpen for a stream already open).
        Violation = 4, "the peer broke the stream rules";
    }
}

fn check_window(field: &'static str, value: u32) -> Result<u32, MessageError> {
    if value == 0 || value > MAX_STREAM_WINDOW {
        return Err(MessageError::Range {
            field,
            value,
            max: MAX_STREAM_WINDOW,
        });
    }
    Ok(value)
}

/// 0x0F: the host daemon opens a byte stream towards the guest's local target (guest link
/// only; the id names the stream). Payload: `u32 window`, 1..=[`MAX_STREAM_WINDOW`]: the bytes
/// the guest may send on the stream before the host grants more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamOpen {
    window: u32,
}

impl StreamOpen {
    /// An open granting `window` bytes (1..=[`MAX_STREAM_WINDOW`]).
    pub fn new(window: u32) -> Result<StreamOpen, MessageError> {
        Ok(StreamOpen {
            window: check_window("StreamOpen.window", window)?,
        })
    }

    /// The initial credit granted to the guest.
    pub fn window(&self) -> u32 {
        self.window
    }

    fn decode(r: &mut Reader<'_>) -> Result<StreamOpen, MessageError> {
        StreamOpen::new(r.u32("StreamOpen.window")?)
    }
}

/// 0x10: bytes of a stream (either direction). Payload: `bytes data`,
/// 1..=[`MAX_STREAM_CHUNK`]. The sender must hold that much credit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamData {
    data: Vec<u8>,
}

impl StreamData {
    /// A chunk of 1..=[`MAX_STREAM_CHUNK`] bytes.
    pub fn new(data: Vec<u8>) -> Result<StreamData, MessageError> {
        check_len("StreamData.data", data.len(), 1, MAX_STREAM_CHUNK)?;
        Ok(StreamData { data })
    }

    /// The bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The bytes, giving up the message.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    fn decode(r: &mut Reader<'_>) -> Result<StreamData, MessageError> {
        let data = r.bytes("StreamData.data", MAX_STREAM_CHUNK)?;
        StreamData::new(data.to_vec())
    }
}

/// 0x11: the receiver of a stream grants its sender `increment` more bytes (either direction;
/// from the guest, the first one accepts a [`StreamOpen`]). Payload: `u32 increment`,
/// 1..=[`MAX_STREAM_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamCredit {
    increment: u32,
}

impl StreamCredit {
    /// A grant of `increment` bytes (1..=[`MAX_STREAM_WINDOW`]).
    pub fn new(increment: u32) -> Result<StreamCredit, MessageError> {
        Ok(StreamCredit {
            increment: check_window("StreamCredit.increment", increment)?,
        })
    }

    /// Bytes granted.
    pub fn increment(&self) -> u32 {
        self.increment
    }

    fn decode(r: &mut Reader<'_>) -> Result<StreamCredit, MessageError> {
        StreamCredit::new(r.u32("StreamCredit.increment")?)
    }
}

/// 0x12: a stream ends (either direction). Payload: `u8 reason, string detail (<= 255)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamClose {
    reason: StreamCloseReason,
    detail: String,
}

impl StreamClose {
    /// A close whose detail is cut (at a character boundary) to [`MAX_DETAIL_LEN`] bytes.
    pub fn truncated(reason: StreamCloseReason, detail: &str) -> StreamClose {
        StreamClose {
            reason,
            detail: truncate_str(detail, MAX_DETAIL_LEN).to_owned(),
        }
    }

    /// Why.
    pub fn reason(&self) -> StreamCloseReason {
        self.reason
    }

    /// Free text for the log.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(self.reason.to_u8()).str(&self.detail);
    }

    fn decode(r: &mut Reader<'_>) -> Result<StreamClose, MessageError> {
        let reason = read_enum(r, "StreamClose.reason", StreamCloseReason::from_u8)?;
        let detail = r.str("StreamClose.detail", 0, MAX_DETAIL_LEN)?.to_owned();
        Ok(StreamClose { reason, detail })
    }
}

/// 0x13: an admin on the host's local socket tells the host daemon to offer the stream to
/// guest `domain` on `127.0.0.1:port`, or (port 0) to stop offering it. Payload:
/// `string domain (1..=255), u16 port`. Answered Reply (empty body) or Error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamExpose {
    domain: String,
    port: u16,
}

impl StreamExpose {
    /// Offer `domain`'s stream on loopback `port` (0: withdraw it).
    pub fn new(domain: impl Into<String>, port: u16) -> Result<StreamExpose, MessageError> {
        let domain = domain.into();
        check_len("StreamExpose.domain", domain.len(), 1, MAX_DOMAIN_LEN)?;
        Ok(StreamExpose { domain, port })
    }

    /// The guest (libvirt domain name).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The loopback port; 0 withdraws.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn encode(&self, w: &mut Writer) {
        w.str(&self.domain).u16(self.port);
    }

    fn decode(r: &mut Reader<'_>) -> Result<StreamExpose, MessageError> {
        let domain = r.str("StreamExpose.domain", 1, MAX_DOMAIN_LEN)?.to_owned();
        let port = r.u16("StreamExpose.port")?;
        Ok(StreamExpose { domain, port })
    }
}

/// Every message of protocol versions 1 to 3. See `docs/protocol.md` for who may send which
/// on which hop, and with which id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// 0x01, id 0.
    Hello(Hello),
    /// 0x02, empty payload.
    Ping,
    /// 0x03.
    Pong(Pong),
    /// 0x04.
    Request(Request),
    /// 0x05.
    Deliver(Deliver),
    /// 0x06.
    Reply(Reply),
    /// 0x07.
    Retry(Retry),
    /// 0x08.
    Error(ErrorMsg),
    /// 0x09.
    Register(Register),
    /// 0x0A, empty payload.
    Status,
    /// 0x0A with a guest's name: the status of that guest link only (host daemon).
    StatusOf(StatusQuery),
    /// 0x0B.
    StatusReply(StatusReply),
    /// 0x0C, empty payload: the frame's id names the request given up on.
    Cancel,
    /// 0x0D, empty payload: host daemon → guest daemon on a guest link, a fresh id each time.
    Heartbeat,
    /// 0x0E: guest daemon → host daemon, the Heartbeat's id.
    Alive(Alive),
    /// 0x0F: host daemon → guest daemon (guest link), the id names the stream.
    StreamOpen(StreamOpen),
    /// 0x10: either daemon on a guest link, the stream's id.
    StreamData(StreamData),
    /// 0x11: either daemon on a guest link, the stream's id.
    StreamCredit(StreamCredit),
    /// 0x12: either daemon on a guest link, the stream's id.
    StreamClose(StreamClose),
    /// 0x13: admin → host daemon (local socket), a request id.
    StreamExpose(StreamExpose),
    /// 0x14: admin → host daemon, one page of its status.
    StatusPage(StatusPage),
}

impl Message {
    /// The frame kind that carries this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::Ping => Kind::Ping,
            Message::Pong(_) => Kind::Pong,
            Message::Request(_) => Kind::Request,
            Message::Deliver(_) => Kind::Deliver,
            Message::Reply(_) => Kind::Reply,
            Message::Retry(_) => Kind::Retry,
            Message::Error(_) => Kind::Error,
            Message::Register(_) => Kind::Register,
            Message::Status | Message::StatusOf(_) => Kind::Status,
            Message::StatusReply(_) => Kind::StatusReply,
            Message::Cancel => Kind::Cancel,
            Message::Heartbeat => Kind::Heartbeat,
            Message::Alive(_) => Kind::Alive,
            Message::StreamOpen(_) => Kind::StreamOpen,
            Message::StreamData(_) => Kind::StreamData,
            Message::StreamCredit(_) => Kind::StreamCredit,
            Message::StreamClose(_) => Kind::StreamClose,
            Message::StreamExpose(_) => Kind::StreamExpose,
            Message::StatusPage(_) => Kind::StatusPage,
        }
    }

    /// The version this message is encoded in: [`DEADLINE_VERSION`] for a Request or Deliver
    /// that carries a deadline, [`MIN_VERSION`] for everything else (whose payloads are the
    /// same in every version).
    pub fn version(&self) -> u8 {
        match self {
            Message::Request(Request {
                timeout: Some(_), ..
            })
            | Message::Deliver(Deliver {
                timeout: Some(_), ..
            }) => DEADLINE_VERSION,
            _ => MIN_VERSION,
        }
    }

    /// Decodes the payload of a version-1 frame of `kind` ([`Message::decode_in`] version 1).
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Message, MessageError> {
        Message::decode_in(MIN_VERSION, kind, payload)
    }

    /// Decodes the payload of a frame of `kind` encoded in `version`. The whole payload must
    /// be consumed: a version-1 Request with a `timeout_ms` has trailing bytes, a version-2
    /// one without is cut short.
    pub fn decode_in(version: u8, kind: Kind, payload: &[u8]) -> Result<Message, MessageError> {
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(MessageError::Version(version));
        }
        let mut r = Reader::new(payload);
        let message = match kind {
            Kind::Hello => Message::Hello(Hello::decode(&mut r)?),
            Kind::Ping => Message::Ping,
            Kind::Pong => Message::Pong(Pong::decode(&mut r)?),
            Kind::Request => Message::Request(Request::decode(&mut r, version)?),
            Kind::Deliver => Message::Deliver(Deliver::decode(&mut r, version)?),
            Kind::Reply => Message::Reply(Reply::decode(&mut r)?),
            Kind::Retry => Message::Retry(Retry::decode(&mut r)?),
            Kind::Error => Message::Error(ErrorMsg::decode(&mut r)?),
            Kind::Register => Message::Register(Register::decode(&mut r)?),
            Kind::Status if payload.is_empty() => Message::Status,
            Kind::Status => Message::StatusOf(StatusQuery::decode(&mut r)?),
            Kind::StatusReply => Message::StatusReply(StatusReply::decode(&mut r)?),
            Kind::Cancel => Message::Cancel,
            Kind::Heartbeat => Message::Heartbeat,
            Kind::Alive => Message::Alive(Alive::decode(&mut r)?),
            Kind::StreamOpen => Message::StreamOpen(StreamOpen::decode(&mut r)?),
            Kind::StreamData => Message::StreamData(StreamData::decode(&mut r)?),
            Kind::StreamCredit => Message::StreamCredit(StreamCredit::decode(&mut r)?),
            Kind::StreamClose => Message::StreamClose(StreamClose::decode(&mut r)?),
            Kind::StreamExpose => Message::StreamExpose(StreamExpose::decode(&mut r)?),
            Kind::StatusPage => Message::StatusPage(StatusPage::decode(&mut r)?),
            Kind::Unknown(value) => return Err(MessageError::UnknownKind(value)),
        };
        r.end(kind)?;
        Ok(message)
    }

    /// The frame kind and payload for this message, in its [`Message::version`].
    pub fn encode(&self) -> (Kind, Vec<u8>) {
        let mut w = Writer::new();
        match self {
            Message::Hello(m) => m.encode(&mut w),
            Message::Pong(m) => m.encode(&mut w),
            Message::Request(m) => m.encode(&mut w),
            Message::Deliver(m) => m.encode(&mut w),
            Message::Reply(m) => {
                w.bytes(&m.body);
            }
            Message::Retry(m) => m.encode(&mut w),
            Message::Error(m) => m.encode(&mut w),
            Message::Register(m) => {
                w.str(m.service.as_str());
            }
            Message::StatusReply(m) => {
                w.bytes(m.json.as_bytes());
            }
            Message::Alive(m) => m.encode(&mut w),
            Message::StreamOpen(m) => {
                w.u32(m.window);
            }
            Message::StreamData(m) => {
                w.bytes(&m.data);
            }
            Message::StreamCredit(m) => {
                w.u32(m.increment);
            }
            Message::StreamClose(m) => m.encode(&mut w),
            Message::StreamExpose(m) => m.encode(&mut w),
            Message::StatusOf(m) => {
                w.str(&m.guest);
            }
            Message::StatusPage(m) => {
                w.str(&m.after);
            }
            Message::Ping | Message::Status | Message::Cancel | Message::Heartbeat => {}
        }
        (self.kind(), w.finish())
    }

    /// This message in a frame of its [`Message::version`] with `id`. The id rule
    /// ([`Kind::allows_id`]) is the caller's to follow; a receiver checks it in
    /// [`Frame::message`].
    pub fn to_frame(&self, id: u64) -> Frame {
        let (kind, payload) = self.encode();
        Frame::from_checked(self.version(), kind, id, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoder, MAX_PAYLOAD};

    fn service(name: &str) -> ServiceName {
        ServiceName::new(name).unwrap()
    }

    fn round_trip(message: &Message) {
        let (kind, payload) = message.encode();
        assert_eq!(
            Message::decode_in(message.version(), kind, &payload).as_ref(),
            Ok(message)
        );
    }

    #[test]
    fn hello_frame_bytes_are_pinned() {
        let hello = Hello::new(1, 1, Role::GuestDaemon, 0x1122_3344_5566_7788, "vm").unwrap();
        let bytes = Message::Hello(hello).to_frame(0).to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 43] = [
            0x56, 0x4D, 0x43, 0x01,                         // magic "VMC\x01"
            0x01,                                           // version
            0x01,                                           // kind Hello
            0x00, 0x00,                                     // flags
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id 0
            0x00, 0x00, 0x00, 0x0F,                         // len 15
            0x98, 0x46, 0x9C, 0x11,                         // payload crc
            0x79, 0xF3, 0xD5, 0xD8,                         // header crc
            0x01, 0x01,                                     // versions 1..=1
            0x02,                                           // role GuestDaemon
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // session
            0x00, 0x02, b'v', b'm',                         // software "vm"
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn request_frame_bytes_are_pinned() {
        let request = Request::new(service("stonith"), b"reset".to_vec()).unwrap();
        let bytes = Message::Request(request).to_frame(0x2A).to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 46] = [
            0x56, 0x4D, 0x43, 0x01, 0x01,
            0x04,                                           // kind Request
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2A, // id 42
            0x00, 0x00, 0x00, 0x12,                         // len 18
            0x8F, 0x47, 0xD7, 0x35,                         // payload crc
            0xE6, 0xFF, 0xDC, 0x3A,                         // header crc
            0x00, 0x07, b's', b't', b'o', b'n', b'i', b't', b'h',
            0x00, 0x00, 0x00, 0x05, b'r', b'e', b's', b'e', b't',
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn retry_frame_bytes_are_pinned() {
        let retry = Retry::new(RetryReason::NoModule, "none").unwrap();
        let bytes = Message::Retry(retry).to_frame(7).to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 35] = [
            0x56, 0x4D, 0x43, 0x01, 0x01,
            0x07,                                           // kind Retry
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // id 7
            0x00, 0x00, 0x00, 0x07,                         // len 7
            0x8F, 0x0F, 0xA6, 0x26,                         // payload crc
            0x57, 0x7C, 0xC8, 0x08,                         // header crc
            0x02,                                           // NoModule
            0x00, 0x04, b'n', b'o', b'n', b'e',
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn error_frame_bytes_are_pinned() {
        let error = ErrorMsg::new(ErrorCode::Forbidden, "no").unwrap();
        let bytes = Message::Error(error).to_frame(0).to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 34] = [
            0x56, 0x4D, 0x43, 0x01, 0x01,
            0x08,                                           // kind Error
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id 0
            0x00, 0x00, 0x00, 0x06,                         // len 6
            0x1B, 0xE4, 0x86, 0xB9,                         // payload crc
            0x5E, 0xB1, 0x46, 0xED,                         // header crc
            0x00, 0x03,                                     // Forbidden
            0x00, 0x02, b'n', b'o',
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn other_payloads_are_pinned() {
        let pong = Pong::new("h1", vec![service("a"), service("bc")]).unwrap();
        assert_eq!(
            Message::Pong(pong).encode(),
            (
                Kind::Pong,
                vec![0, 2, b'h', b'1', 2, 0, 1, b'a', 0, 2, b'b', b'c']
            )
        );
        let origin = Origin::new("g", "", OriginSource::SocketName).unwrap();
        let deliver = Deliver::new(origin, service("s"), b"x".to_vec()).unwrap();
        assert_eq!(
            Message::Deliver(deliver).encode(),
            (
                Kind::Deliver,
                vec![0, 1, b'g', 0, 0, 2, 0, 1, b's', 0, 0, 0, 1, b'x']
            )
        );
        let reply = Reply::new(b"OK".to_vec()).unwrap();
        assert_eq!(
            Message::Reply(reply).encode(),
            (Kind::Reply, vec![0, 0, 0, 2, b'O', b'K'])
        );
        let register = Register::new(service("stonith"));
        assert_eq!(
            Message::Register(register).encode(),
            (Kind::Register, b"\x00\x07stonith".to_vec())
        );
        let status = StatusReply::new("{}").unwrap();
        assert_eq!(
            Message::StatusReply(status).encode(),
            (Kind::StatusReply, vec![0, 0, 0, 2, b'{', b'}'])
        );
        for (message, kind) in [
            (Message::Ping, Kind::Ping),
            (Message::Status, Kind::Status),
            (Message::Cancel, Kind::Cancel),
        ] {
            assert_eq!(message.encode(), (kind, vec![]));
        }
    }

    #[test]
    fn every_message_round_trips() {
        let origin = Origin::new(
            "guest-1",
            "6f1c0d2e-1111-2222-3333-444455556666",
            OriginSource::Libvirt,
        )
        .unwrap();
        let messages = [
            Message::Hello(Hello::current(Role::Client, 99)),
            Message::Ping,
            Message::Pong(
                Pong::new("node1", vec![service("stonith"), service("monitor")]).unwrap(),
            ),
            Message::Request(Request::new(service("monitor"), b"a b".to_vec()).unwrap()),
            Message::Request(
                Request::new(service("monitor"), b"a b".to_vec())
                    .unwrap()
                    .with_timeout(Some(TimeoutMs::new(40_000).unwrap())),
            ),
            Message::Deliver(
                Deliver::new(origin.clone(), service("stonith"), b"body".to_vec())
                    .unwrap()
                    .with_timeout(Some(TimeoutMs::new(1).unwrap())),
            ),
            Message::Deliver(Deliver::new(origin, service("stonith"), b"body".to_vec()).unwrap()),
            Message::Reply(Reply::new(Vec::new()).unwrap()),
            Message::Retry(Retry::new(RetryReason::LinkChanged, "migrated").unwrap()),
            Message::Error(ErrorMsg::new(ErrorCode::Timeout, "slow").unwrap()),
            Message::Register(Register::new(service("monitor"))),
            Message::Status,
            Message::StatusReply(StatusReply::new("{\"links\":[]}").unwrap()),
            Message::Cancel,
            Message::Heartbeat,
            Message::Alive(Alive::default()),
            Message::StatusOf(StatusQuery::new("g1").unwrap()),
            Message::StatusPage(StatusPage::new("").unwrap()),
            Message::StatusPage(StatusPage::new("g0499").unwrap()),
            Message::Alive(
                Alive::new(vec!["db.service".into(), "getty@tty1.service".into()]).unwrap(),
            ),
        ];
        for message in &messages {
            round_trip(message);
        }
        // every way the host knows a guest, with its wire value after the origin's strings
        for (source, value) in [
            (OriginSource::Libvirt, 1),
            (OriginSource::SocketName, 2),
            (OriginSource::Configured, 3),
        ] {
            let origin = Origin::new("g", "", source).unwrap();
            let deliver = Message::Deliver(Deliver::new(origin, service("s"), Vec::new()).unwrap());
            round_trip(&deliver);
            let (_, payload) = deliver.encode();
            assert_eq!(payload[..6], [0, 1, b'g', 0, 0, value], "{source}");
        }
    }

    #[test]
    fn largest_messages_fit_a_frame() {
        let long = |n: usize| "x".repeat(n);
        let origin = Origin::new(
            long(MAX_DOMAIN_LEN),
            "6F1C0D2E-1111-2222-3333-444455556666",
            OriginSource::Libvirt,
        )
        .unwrap();
        let name = service(&long(MAX_SERVICE_LEN));
        let deadline = TimeoutMs::new(MAX_TIMEOUT_MS).ok();
        let largest = [
            Message::Deliver(
                Deliver::new(origin.clone(), name.clone(), vec![0; MAX_BODY])
                    .unwrap()
                    .with_timeout(deadline),
            ),
            Message::Deliver(Deliver::new(origin, name.clone(), vec![0; MAX_BODY]).unwrap()),
            Message::Request(
                Request::new(name.clone(), vec![0; MAX_BODY])
                    .unwrap()
                    .with_timeout(deadline),
            ),
            Message::Request(Request::new(name.clone(), vec![0; MAX_BODY]).unwrap()),
            Message::Pong(Pong::new(long(MAX_HOST_LEN), vec![name; MAX_SERVICES]).unwrap()),
            Message::Error(
                ErrorMsg::new(ErrorCode::Internal, long(MAX_ERROR_MESSAGE_LEN)).unwrap(),
            ),
            Message::StatusReply(StatusReply::new(long(MAX_BODY)).unwrap()),
        ];
        for message in &largest {
            let bytes = message.to_frame(1).to_bytes();
            assert!(bytes.len() - crate::HEADER_LEN <= MAX_PAYLOAD);
            let mut decoder = Decoder::new();
            decoder.feed(&bytes);
            let frame = decoder.next_frame().unwrap().unwrap();
            assert_eq!(frame.message().as_ref(), Ok(message));
        }
    }

    #[test]
    fn constructors_validate() {
        assert_eq!(
            ServiceName::new("Stonith"),
            Err(MessageError::ServiceName {
                field: "service name",
                name: "Stonith".into()
            })
        );
        ServiceName::new("a/b").unwrap_err();
        ServiceName::new("a b").unwrap_err();
        ServiceName::new("é").unwrap_err();
        assert_eq!(
            ServiceName::new(""),
            Err(MessageError::TooShort {
                field: "service name",
                len: 0,
                min: 1
            })
        );
        assert_eq!(
            ServiceName::new("x".repeat(33)),
            Err(MessageError::TooLong {
                field: "service name",
                len: 33,
                max: 32
            })
        );
        ServiceName::new("a-z_0.9").unwrap();
        assert_eq!("ok".parse::<ServiceName>().unwrap().as_str(), "ok");
        assert_eq!(
            Hello::new(2, 1, Role::Client, 0, ""),
            Err(MessageError::VersionRange { min: 2, max: 1 })
        );
        Hello::new(0, 1, Role::Client, 0, "").unwrap_err();
        Hello::new(1, 1, Role::Client, 0, "x".repeat(65)).unwrap_err();
        Request::new(service("s"), vec![0; MAX_BODY + 1]).unwrap_err();
        Reply::new(vec![0; MAX_BODY + 1]).unwrap_err();
        Origin::new("", "", OriginSource::Libvirt).unwrap_err();
        Origin::new("g", "not-a-uuid", OriginSource::Libvirt).unwrap_err();
        Origin::new(
            "g",
            "6f1c0d2e-1111-2222-3333-44445555666g",
            OriginSource::Libvirt,
        )
        .unwrap_err();
        Pong::new("h", vec![service("s"); 33]).unwrap_err();
        Retry::new(RetryReason::Busy, "x".repeat(256)).unwrap_err();
        ErrorMsg::new(ErrorCode::Internal, "x".repeat(1025)).unwrap_err();
        StatusReply::new("x".repeat(MAX_BODY + 1)).unwrap_err();
    }

    #[test]
    fn truncating_constructors_cut_at_char_boundaries() {
        let detail = "é".repeat(200); // 400 bytes
        let retry = Retry::truncated(RetryReason::Busy, &detail);
        assert_eq!(retry.detail().len(), 254);
        round_trip(&Message::Retry(retry));
        let error = ErrorMsg::truncated(ErrorCode::Internal, &"x".repeat(5000));
        assert_eq!(error.message().len(), MAX_ERROR_MESSAGE_LEN);
        assert_eq!(
            ErrorMsg::truncated(ErrorCode::Internal, "short").message(),
            "short"
        );
    }

    #[test]
    fn software_fits() {
        assert!(SOFTWARE.len() <= MAX_SOFTWARE_LEN);
        let hello = Hello::current(Role::Module, 1);
        assert_eq!(
            Hello::new(MIN_VERSION, MAX_VERSION, Role::Module, 1, SOFTWARE).as_ref(),
            Ok(&hello)
        );
    }

    fn timeout(ms: u32) -> TimeoutMs {
        TimeoutMs::new(ms).unwrap()
    }

    #[test]
    fn version_2_request_frame_bytes_are_pinned() {
        let request = Request::new(service("stonith"), b"reset".to_vec())
            .unwrap()
            .with_timeout(Some(timeout(5000)));
        let message = Message::Request(request);
        assert_eq!(message.version(), 2);
        let bytes = message.to_frame(0x2A).to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 50] = [
            0x56, 0x4D, 0x43, 0x01,
            0x02,                                           // version 2
            0x04,                                           // kind Request
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2A, // id 42
            0x00, 0x00, 0x00, 0x16,                         // len 22
            0xC2, 0xC3, 0xA9, 0xF1,                         // payload crc
            0xFE, 0x97, 0xF9, 0x88,                         // header crc
            0x00, 0x07, b's', b't', b'o', b'n', b'i', b't', b'h',
            0x00, 0x00, 0x00, 0x05, b'r', b'e', b's', b'e', b't',
            0x00, 0x00, 0x13, 0x88,                         // timeout_ms 5000
        ];
        assert_eq!(bytes, expected);
        let mut decoder = Decoder::new();
        decoder.feed(&bytes);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!(frame.version(), 2);
        assert_eq!(frame.message(), Ok(message));
    }

    #[test]
    fn version_2_deliver_payload_is_pinned() {
        let origin = Origin::new("g", "", OriginSource::SocketName).unwrap();
        let deliver = Deliver::new(origin, service("s"), b"x".to_vec())
            .unwrap()
            .with_timeout(Some(timeout(MAX_TIMEOUT_MS)));
        let message = Message::Deliver(deliver);
        assert_eq!(message.version(), 2);
        assert_eq!(
            message.encode(),
            (
                Kind::Deliver,
                vec![
                    0, 1, b'g', 0, 0, 2, 0, 1, b's', 0, 0, 0, 1, b'x', 0x05, 0x26, 0x5C, 0x00
                ]
            )
        );
        let (kind, payload) = message.encode();
        assert_eq!(Message::decode_in(2, kind, &payload), Ok(message));
    }

    #[test]
    fn only_requests_and_deliveries_with_a_deadline_are_version_2() {
        let request = Request::new(service("s"), Vec::new()).unwrap();
        assert_eq!(Message::Request(request.clone()).version(), 1);
        let carried = request.with_timeout(Some(timeout(1)));
        assert_eq!(carried.timeout(), Some(timeout(1)));
        assert_eq!(Message::Request(carried.clone()).version(), 2);
        // taking the deadline away makes it a version-1 request again
        assert_eq!(Message::Request(carried.with_timeout(None)).version(), 1);
        for message in [Message::Ping, Message::Cancel, Message::Status] {
            assert_eq!(message.version(), 1);
            assert_eq!(message.to_frame(1).version(), 1);
        }
        // answers and every other kind decode alike in both versions
        let reply = Message::Reply(Reply::new(b"OK".to_vec()).unwrap());
        let (kind, payload) = reply.encode();
        assert_eq!(Message::decode_in(2, kind, &payload).as_ref(), Ok(&reply));
    }

    #[test]
    fn version_2_deadlines_are_decoded_strictly() {
        let request = Request::new(service("s"), b"b".to_vec()).unwrap();
        let (kind, v1) = Message::Request(request).encode();
        // version 2 needs the field
        assert_eq!(
            Message::decode_in(2, kind, &v1),
            Err(MessageError::Truncated {
                field: "Request.timeout_ms",
                needed: 4,
                left: 0
            })
        );
        let with = |ms: u32| {
            let mut p = v1.clone();
            p.extend_from_slice(&ms.to_be_bytes());
            p
        };
        // 0 is not a deadline; more than a day is out of bounds
        for bad in [0, MAX_TIMEOUT_MS + 1, u32::MAX] {
            assert_eq!(
                Message::decode_in(2, kind, &with(bad)),
                Err(MessageError::Timeout {
                    field: "Request.timeout_ms",
                    value: bad
                })
            );
        }
        Message::decode_in(2, kind, &with(1)).unwrap();
        Message::decode_in(2, kind, &with(MAX_TIMEOUT_MS)).unwrap();
        // version 1 has no such field: the same bytes are trailing bytes there
        assert_eq!(
            Message::decode_in(1, kind, &with(1)),
            Err(MessageError::TrailingBytes {
                kind: Kind::Request,
                count: 4
            })
        );
        // nothing may follow it
        let mut long = with(1);
        long.push(0);
        assert!(matches!(
            Message::decode_in(2, kind, &long),
            Err(MessageError::TrailingBytes { count: 1, .. })
        ));
        // a Deliver alike
        let origin = Origin::new("g", "", OriginSource::Libvirt).unwrap();
        let (kind, mut p) =
            Message::Deliver(Deliver::new(origin, service("s"), Vec::new()).unwrap()).encode();
        p.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            Message::decode_in(2, kind, &p),
            Err(MessageError::Timeout {
                field: "Deliver.timeout_ms",
                value: 0
            })
        );
        // versions this crate does not speak
        assert_eq!(
            Message::decode_in(3, Kind::Ping, &[]),
            Err(MessageError::Version(3))
        );
        assert_eq!(
            Message::decode_in(0, Kind::Ping, &[]),
            Err(MessageError::Version(0))
        );
    }

    #[test]
    fn timeouts_are_bounded() {
        TimeoutMs::new(0).unwrap_err();
        TimeoutMs::new(MAX_TIMEOUT_MS + 1).unwrap_err();
        assert_eq!(
            timeout(1500).as_duration(),
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(timeout(1500).to_string(), "1500 ms");
        let d = std::time::Duration::from_micros;
        assert_eq!(TimeoutMs::from_duration(d(999)), None);
        assert_eq!(TimeoutMs::from_duration(d(1999)), Some(timeout(1)));
        assert_eq!(
            TimeoutMs::from_duration(std::time::Duration::from_secs(10 * 86_400)),
            Some(timeout(MAX_TIMEOUT_MS))
        );
        let hello = Hello::new(1, 1, Role::Client, 0, "").unwrap();
        assert_eq!(hello.negotiated(), Some(1));
        assert_eq!(Hello::current(Role::Client, 0).negotiated(), Some(2));
        assert_eq!(
            Hello::new(4, 5, Role::Client, 0, "").unwrap().negotiated(),
            None
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        assert_eq!(
            Message::decode(Kind::Ping, &[0]),
            Err(MessageError::TrailingBytes {
                kind: Kind::Ping,
                count: 1
            })
        );
        let (kind, mut payload) = Message::Reply(Reply::new(b"ok".to_vec()).unwrap()).encode();
        payload.extend_from_slice(b"zz");
        assert_eq!(
            Message::decode(kind, &payload),
            Err(MessageError::TrailingBytes {
                kind: Kind::Reply,
                count: 2
            })
        );
    }

    #[test]
    fn bad_service_name_on_the_wire() {
        assert_eq!(
            Message::decode(Kind::Request, b"\x00\x03A;B\x00\x00\x00\x00"),
            Err(MessageError::ServiceName {
                field: "Request.service",
                name: "A;B".into()
            })
        );
        assert_eq!(
            Message::decode(Kind::Register, b"\x00\x00"),
            Err(MessageError::TooShort {
                field: "Register.service",
                len: 0,
                min: 1
            })
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert_eq!(
            Message::decode(Kind::Retry, b"\x01\x00\x02\xC3\x28"),
            Err(MessageError::InvalidUtf8 {
                field: "Retry.detail"
            })
        );
        assert_eq!(
            Message::decode(Kind::StatusReply, b"\x00\x00\x00\x01\xFF"),
            Err(MessageError::InvalidUtf8 {
                field: "StatusReply.body"
            })
        );
        // A non-ASCII byte sequence that is valid UTF-8 is still not a service name.
        assert!(matches!(
            Message::decode(Kind::Register, "\x00\x02é".as_bytes()),
            Err(MessageError::ServiceName { .. })
        ));
    }

    #[test]
    fn oversize_fields_are_rejected() {
        // Error.message announcing 1025 bytes.
        let mut payload = vec![0, 1, 0x04, 0x01];
        payload.extend(vec![b'x'; 1025]);
        assert_eq!(
            Message::decode(Kind::Error, &payload),
            Err(MessageError::TooLong {
                field: "Error.message",
                len: 1025,
                max: 1024
            })
        );
        // Reply body announcing more than MAX_BODY, with no bytes behind it.
        assert_eq!(
            Message::decode(Kind::Reply, &[0, 0, 0xF0, 0x01]),
            Err(MessageError::TooLong {
                field: "Reply.body",
                len: 0xF001,
                max: MAX_BODY
            })
        );
        // Pong with 33 services.
        assert_eq!(
            Message::decode(Kind::Pong, &[0, 0, 33]),
            Err(MessageError::TooLong {
                field: "Pong.services",
                len: 33,
                max: MAX_SERVICES
            })
        );
        // Hello software of 65 bytes.
        let mut payload = vec![1, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 65];
        payload.extend(vec![b'x'; 65]);
        assert!(matches!(
            Message::decode(Kind::Hello, &payload),
            Err(MessageError::TooLong {
                field: "Hello.software",
                ..
            })
        ));
    }

    #[test]
    fn out_of_range_enums_are_rejected() {
        assert_eq!(
            Message::decode(Kind::Hello, &[1, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(MessageError::OutOfRange {
                field: "Hello.role",
                value: 5
            })
        );
        assert_eq!(
            Message::decode(Kind::Hello, &[2, 1, 1]),
            Err(MessageError::VersionRange { min: 2, max: 1 })
        );
        assert_eq!(
            Message::decode(Kind::Retry, &[0, 0, 0]),
            Err(MessageError::OutOfRange {
                field: "Retry.reason",
                value: 0
            })
        );
        assert_eq!(
            Message::decode(Kind::Error, &[0, 6, 0, 0]),
            Err(MessageError::OutOfRange {
                field: "Error.code",
                value: 6
            })
        );
        assert_eq!(
            Message::decode(Kind::Deliver, &[0, 1, b'g', 0, 0, 4]),
            Err(MessageError::OutOfRange {
                field: "Origin.source",
                value: 4
            })
        );
        assert_eq!(
            Message::decode(Kind::Unknown(0x15), &[]),
            Err(MessageError::UnknownKind(0x15))
        );
    }

    #[test]
    fn heartbeat_and_alive_frames_are_pinned() {
        // (checked against an independent CRC-32C implementation)
        let heartbeat = Message::Heartbeat.to_frame(3).to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 28] = [
            0x56, 0x4D, 0x43, 0x01, 0x01,
            0x0D,                                           // kind Heartbeat
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, // id 3
            0x00, 0x00, 0x00, 0x00,                         // len 0
            0x00, 0x00, 0x00, 0x00,                         // payload crc (of nothing)
            0x97, 0x06, 0x48, 0x0D,                         // header crc
        ];
        assert_eq!(heartbeat, expected);
        let alive = Message::Alive(Alive::new(vec!["db.service".into()]).unwrap())
            .to_frame(3)
            .to_bytes();
        #[rustfmt::skip]
        let expected: [u8; 41] = [
            0x56, 0x4D, 0x43, 0x01, 0x01,
            0x0E,                                           // kind Alive
            0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, // id 3, the Heartbeat's
            0x00, 0x00, 0x00, 0x0D,                         // len 13
            0x4D, 0xE6, 0xE8, 0x27,                         // payload crc
            0xD1, 0x9A, 0x9A, 0xF9,                         // header crc
            0x01,                                           // one failing check
            0x00, 0x0A, b'd', b'b', b'.', b's', b'e', b'r', b'v', b'i', b'c', b'e',
        ];
        assert_eq!(alive, expected);
        assert_eq!(
            Message::Alive(Alive::default()).encode(),
            (Kind::Alive, vec![0])
        );
        assert_eq!(
            Message::StatusOf(StatusQuery::new("g1").unwrap()).encode(),
            (Kind::Status, vec![0, 2, b'g', b'1'])
        );
        assert_eq!(
            Message::decode(Kind::Status, &[0, 0]),
            Err(MessageError::TooShort {
                field: "Status.guest",
                len: 0,
                min: 1
            })
        );
    }

    #[test]
    fn status_page_is_pinned_and_strict() {
        // the first page: an empty cursor (unlike Status, whose guest is never empty)
        assert_eq!(
            Message::StatusPage(StatusPage::new("").unwrap()).encode(),
            (Kind::StatusPage, vec![0, 0])
        );
        assert_eq!(
            Message::StatusPage(StatusPage::new("g1").unwrap()).encode(),
            (Kind::StatusPage, vec![0, 2, b'g', b'1'])
        );
        assert_eq!(
            Message::decode(Kind::StatusPage, &[0, 2, b'g', b'1']),
            Ok(Message::StatusPage(StatusPage::new("g1").unwrap()))
        );
        // no payload at all is cut short, not a first page
        assert!(matches!(
            Message::decode(Kind::StatusPage, &[]),
            Err(MessageError::Truncated { .. })
        ));
        StatusPage::new("x".repeat(MAX_DOMAIN_LEN)).unwrap();
        StatusPage::new("x".repeat(MAX_DOMAIN_LEN + 1)).unwrap_err();
        let mut long = vec![1, 0];
        long.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(
            Message::decode(Kind::StatusPage, &long),
            Err(MessageError::TooLong {
                field: "StatusPage.after",
                len: 256,
                max: MAX_DOMAIN_LEN
            })
        );
        // nothing may follow the cursor
        Message::decode(Kind::StatusPage, &[0, 0, 0]).unwrap_err();
    }

    #[test]
    fn alive_is_strict() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Alive::new(names(&["a", "b@c.service", "x:y", "sys-dev\\x2dfoo.mount"])).unwrap();
        for bad in [
            names(&[""]),
            names(&["a b"]),
            names(&["a/b"]),
            names(&["é"]),
            names(&["a", "a"]),
            vec!["x".repeat(65)],
            (0..9).map(|i| format!("u{i}")).collect(),
        ] {
            assert!(Alive::new(bad.clone()).is_err(), "{bad:?}");
        }
        Alive::new(vec!["x".repeat(64)]).unwrap();
        // decoding applies the same rules, and nothing may follow the last name
        assert_eq!(
            Message::decode(Kind::Alive, &[1, 0, 1, b'/']),
            Err(MessageError::CheckName {
                field: "Alive.check",
                name: "/".into()
            })
        );
        assert!(matches!(
            Message::decode(Kind::Alive, &[2, 0, 1, b'a', 0, 1, b'a']),
            Err(MessageError::CheckName { .. })
        ));
        assert!(matches!(
            Message::decode(Kind::Alive, &[9]),
            Err(MessageError::TooLong { .. })
        ));
        assert!(matches!(
            Message::decode(Kind::Alive, &[1, 0, 0]),
            Err(MessageError::TooShort { .. })
        ));
        assert!(matches!(
            Message::decode(Kind::Alive, &[0, 0]),
            Err(MessageError::TrailingBytes { .. })
        ));
        assert!(matches!(
            Message::decode(Kind::Alive, &[]),
            Err(MessageError::Truncated { .. })
        ));
        assert!(matches!(
            Message::decode(Kind::Heartbeat, &[0]),
            Err(MessageError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn truncated_payloads_are_rejected() {
        let (kind, payload) = Message::Hello(Hello::current(Role::HostDaemon, 5)).encode();
        for cut in 0..payload.len() {
            assert!(
                matches!(
                    Message::decode(kind, &payload[..cut]),
                    Err(MessageError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate((1, 1), (1, 1)), Some(1));
        assert_eq!(negotiate((1, 3), (2, 5)), Some(3));
        assert_eq!(negotiate((1, 1), (2, 3)), None);
        assert_eq!(negotiate((0, 0), (0, 4)), None);
        assert_eq!(negotiate((3, 1), (1, 3)), None);
    }

    #[test]
    fn enum_values_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_u8(role.to_u8()), Some(*role));
        }
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code.to_u16()), Some(*code));
        }
        assert_eq!(RetryReason::ALL.len(), 4);
        assert_eq!(RetryReason::from_u8(0), None);
        assert_eq!(OriginSource::ALL.len(), 3);
        assert_eq!(OriginSource::from_u8(0), None);
        assert_eq!(OriginSource::from_u8(4), None);
    }

    #[test]
    fn error_messages_name_the_field() {
        assert_eq!(
            MessageError::TooLong {
                field: "Request.body",
                len: 70000,
                max: MAX_BODY
            }
            .to_string(),
            "Request.body is 70000 long, more than the maximum of 61440"
        );
        assert_eq!(
            MessageError::ServiceName {
                field: "Request.service",
                name: "a\nb".into()
            }
            .to_string(),
            "Request.service \"a\\nb\" is not a service name (1 to 32 bytes of a-z, 0-9, '_', '.', '-')"
        );
    }

    #[test]
    fn stream_frames_are_pinned_and_strict() {
        // StreamCredit of 65536 bytes on stream 9: kind 0x11, version 1, payload u32.
        let bytes = Message::StreamCredit(StreamCredit::new(65536).unwrap())
            .to_frame(9)
            .to_bytes();
        assert_eq!(&bytes[4..6], &[1, 0x11]);
        assert_eq!(&bytes[8..20], &[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 4]);
        assert_eq!(&bytes[28..], &[0, 1, 0, 0]);
        // StreamClose Refused "x": u8 2, string "x"
        let (kind, payload) =
            Message::StreamClose(StreamClose::truncated(StreamCloseReason::Refused, "x")).encode();
        assert_eq!(
            (kind, payload.as_slice()),
            (Kind::StreamClose, &[2, 0, 1, b'x'][..])
        );
        // StreamExpose "g3" 3122
        let (kind, payload) =
            Message::StreamExpose(StreamExpose::new("g3", 3122).unwrap()).encode();
        assert_eq!(
            (kind, payload.as_slice()),
            (Kind::StreamExpose, &[0, 2, b'g', b'3', 0x0C, 0x32][..])
        );
        for m in [
            Message::StreamOpen(StreamOpen::new(MAX_STREAM_WINDOW).unwrap()),
            Message::StreamData(StreamData::new(vec![7; MAX_STREAM_CHUNK]).unwrap()),
            Message::StreamCredit(StreamCredit::new(1).unwrap()),
            Message::StreamClose(StreamClose::truncated(StreamCloseReason::Violation, "")),
            Message::StreamExpose(StreamExpose::new("g", 0).unwrap()),
        ] {
            assert_eq!(
                m.version(),
                MIN_VERSION,
                "stream frames travel in version 1"
            );
            round_trip(&m);
        }
        // a window of 0 or beyond the maximum, empty or oversized data, an undefined reason,
        // an empty domain, trailing bytes: all refused, naming the field
        let window_err = |v: u32| MessageError::Range {
            field: "StreamOpen.window",
            value: v,
            max: MAX_STREAM_WINDOW,
        };
        assert_eq!(
            Message::decode(Kind::StreamOpen, &[0, 0, 0, 0]),
            Err(window_err(0))
        );
        assert_eq!(
            Message::decode(Kind::StreamOpen, &(MAX_STREAM_WINDOW + 1).to_be_bytes()),
            Err(window_err(MAX_STREAM_WINDOW + 1))
        );
        assert!(matches!(
            Message::decode(Kind::StreamCredit, &[0, 0, 0, 0]),
            Err(MessageError::Range {
                field: "StreamCredit.increment",
                ..
            })
        ));
        assert!(matches!(
            Message::decode(Kind::StreamData, &[0, 0, 0, 0]),
            Err(MessageError::TooShort {
                field: "StreamData.data",
                ..
            })
        ));
        let mut big = (MAX_STREAM_CHUNK as u32 + 1).to_be_bytes().to_vec();
        big.extend(vec![0; MAX_STREAM_CHUNK + 1]);
        assert!(matches!(
            Message::decode(Kind::StreamData, &big),
            Err(MessageError::TooLong {
                field: "StreamData.data",
                ..
            })
        ));
        assert!(matches!(
            Message::decode(Kind::StreamClose, &[9, 0, 0]),
            Err(MessageError::OutOfRange {
                field: "StreamClose.reason",
                ..
            })
        ));
        assert!(matches!(
            Message::decode(Kind::StreamExpose, &[0, 0, 0, 1]),
            Err(MessageError::TooShort {
                field: "StreamExpose.domain",
                ..
            })
        ));
        assert!(matches!(
            Message::decode(Kind::StreamCredit, &[0, 0, 0, 1, 0]),
            Err(MessageError::TrailingBytes { .. })
        ));
        StreamData::new(Vec::new()).unwrap_err();
        StreamOpen::new(0).unwrap_err();
    }

    #[test]
    fn streams_are_negotiated_only_by_a_hello_that_offers_them() {
        let daemon = Hello::current_streams(Role::GuestDaemon, 1);
        assert_eq!(daemon.versions(), (MIN_VERSION, STREAM_VERSION));
        assert_eq!(daemon.negotiated(), Some(STREAM_VERSION));
        // an earlier daemon offers 1..=2: no streams
        assert_eq!(
            Hello::new(1, 2, Role::HostDaemon, 1, "old")
                .unwrap()
                .negotiated(),
            Some(DEADLINE_VERSION)
        );
        // clients and modules keep offering 1..=2
        assert_eq!(
            Hello::current(Role::Client, 1).versions(),
            (MIN_VERSION, MAX_VERSION)
        );
    }
}
