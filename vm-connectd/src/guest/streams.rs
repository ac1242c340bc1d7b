//! Guest mode: the streams the host opens (docs/protocol.md §16), each spliced onto a TCP
//! connection to the local target (`--stream-target`, pacemaker-remoted on 127.0.0.1:3121).
//!
//! Only the host opens streams: nothing here opens one towards the host, and a guest daemon
//! started with `--no-streams` does not offer them in its Hello and refuses any StreamOpen.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use vm_proto::{Message, StreamClose, StreamCloseReason, StreamCredit, StreamOpen};

use super::{Guest, State};
use crate::stream::{LinkTx, MAX_STREAMS_PER_GUEST, STREAM_WINDOW, Stream};

/// The longest the guest daemon tries to connect to its target for one stream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The guest's streams: open ones, and those whose target connection is under way.
#[derive(Debug, Default)]
pub(super) struct Streams {
    open: HashMap<u64, Stream>,
    opening: HashSet<u64>,
    /// Streams opened since the daemon started.
    pub(super) opened: u64,
}

impl Streams {
    /// Streams open now.
    pub(super) fn len(&self) -> usize {
        self.open.len()
    }
}

fn close(st: &State, sid: u64, reason: StreamCloseReason, detail: &str) {
    let frame = Message::StreamClose(StreamClose::truncated(reason, detail)).to_frame(sid);
    let _ = st.send_host(&frame);
}

/// A stream frame from the host.
pub(super) fn on_frame(guest: &Arc<Guest>, st: &mut State, sid: u64, msg: Message) {
    let result = match msg {
        Message::StreamOpen(o) => {
            open(guest, st, sid, o);
            return;
        }
        Message::StreamData(d) => match st.streams.open.get_mut(&sid) {
            Some(s) => s.on_data(d.into_data()),
            None => Ok(()),
        },
        Message::StreamCredit(c) => match st.streams.open.get(&sid) {
            Some(s) => s.on_credit(c.increment()),
            None => Ok(()),
        },
        Message::StreamClose(c) => {
            st.streams.opening.remove(&sid);
            tracing::debug!(stream = sid, reason = %c.reason(), detail = c.detail(), "the host closed the stream");
            if c.reason() != StreamCloseReason::Closed {
                if let Some(s) = st.streams.open.remove(&sid) {
                    s.abort();
                }
            } else if st
                .streams
                .open
                .get_mut(&sid)
                .is_some_and(Stream::on_peer_close)
            {
                st.streams.open.remove(&sid);
            }
            return;
        }
        _ => return,
    };
    if let Err(v) = result {
        st.offences += 1;
        tracing::warn!(
            stream = sid,
            "the host broke the stream rules: {v}; stream closed"
        );
        if let Some(s) = st.streams.open.remove(&sid) {
            s.abort();
        }
        close(st, sid, StreamCloseReason::Violation, &v.to_string());
    }
}

fn open(guest: &Arc<Guest>, st: &mut State, sid: u64, o: StreamOpen) {
    let Some(target) = guest.cfg.stream_target else {
        close(
            st,
            sid,
            StreamCloseReason::Refused,
            "this guest's vm-connectd offers no streams",
        );
        return;
    };
    if st.streams.open.contains_key(&sid) || st.streams.opening.contains(&sid) {
        tracing::warn!(
            stream = sid,
            "the host opened a stream that is already open; ignored"
        );
        return;
    }
    if st.streams.open.len() + st.streams.opening.len() >= MAX_STREAMS_PER_GUEST {
        tracing::warn!(
            stream = sid,
            "refused a stream: {MAX_STREAMS_PER_GUEST} are open"
        );
        close(
            st,
            sid,
            StreamCloseReason::Limit,
            "too many streams open in the guest",
        );
        return;
    }
    st.streams.opening.insert(sid);
    let g = Arc::clone(guest);
    tokio::spawn(async move {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
        let mut st = g.lock();
        // (closed meanwhile by the host, or the host side changed: nobody waits for it)
        if !st.streams.opening.remove(&sid) {
            return;
        }
        let tcp = match tcp {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                tracing::warn!(stream = sid, %target, "cannot connect the stream's target: {e}");
                let why = format!("cannot connect to {target} in the guest: {e}");
                close(&st, sid, StreamCloseReason::Refused, &why);
                return;
            }
            Err(_) => {
                tracing::warn!(stream = sid, %target, "the stream's target did not accept within {CONNECT_TIMEOUT:?}");
                let why =
                    format!("{target} in the guest did not accept within {CONNECT_TIMEOUT:?}");
                close(&st, sid, StreamCloseReason::Refused, &why);
                return;
            }
        };
        let Some(writer) = st.writer.clone() else {
            return;
        };
        let bulk = writer.bulk();
        let tx = LinkTx::new(move |f| writer.offer(f.to_bytes()), bulk);
        let h = Arc::clone(&g);
        let stream = Stream::start(sid, tcp, tx, o.window(), STREAM_WINDOW, move |sid| {
            h.lock().streams.open.remove(&sid);
        });
        st.streams.open.insert(sid, stream);
        st.streams.opened += 1;
        // accepted: the host may send this much
        if let Ok(grant) = StreamCredit::new(STREAM_WINDOW) {
            let _ = st.send_host(&Message::StreamCredit(grant).to_frame(sid));
        }
        tracing::info!(stream = sid, %target, "stream opened by the host");
    });
}

/// The host side changed or went away: every stream's target connection is closed at once
/// (the host's ends are gone; Pacemaker connects again through the new host).
pub(super) fn abort_all(st: &mut State) {
    st.streams.opening.clear();
    let n = st.streams.open.len();
    for (_, s) in st.streams.open.drain() {
        s.abort();
    }
    if n > 0 {
        tracing::info!(
            closed = n,
            "host side changed; the streams' connections closed"
        );
    }
}
