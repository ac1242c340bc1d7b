//! Host mode: the loopback endpoints where Pacemaker reaches guest nodes, and the streams that
//! carry each connection accepted there over the guest's link (docs/protocol.md §16).
//!
//! Which guest a port leads to is set only on this host, by root: `--expose DOMAIN=PORT` or a
//! StreamExpose on the local socket (`vm-connectd expose`, which the VirtualDomain agent runs
//! with the resource's `remote-port`). A connection is carried to the link whose identity
//! (from libvirt, the operator, or the socket name; never from the guest's bytes) is that
//! domain, and only if the guest daemon there offered streams in its Hello.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use vm_proto::{ErrorCode, ErrorMsg, Message, STREAM_VERSION, StreamCloseReason, StreamOpen};

use super::{Host, LinkId, State, offence};
use crate::frames::offer;
use crate::status::LinkState;
use crate::stream::{LinkTx, MAX_STREAMS_PER_GUEST, STREAM_WINDOW, Stream};

/// A guest's stream offered on a loopback port.
#[derive(Debug)]
pub(super) struct Exposure {
    pub(super) port: u16,
    listener: AbortHandle,
}

/// The streams of one link.
pub(super) type Streams = HashMap<u64, Stream>;

/// Offers guest `domain`'s stream on `127.0.0.1:port`, or withdraws it (port 0). Idempotent:
/// the same port again changes nothing; another port moves the offer there.
pub(super) fn expose(host: &Arc<Host>, domain: &str, port: u16) -> Result<(), ErrorMsg> {
    {
        let mut st = host.lock();
        if port == 0 {
            if let Some(e) = st.exposed.remove(domain) {
                e.listener.abort();
                tracing::info!(guest = domain, port = e.port, "stream endpoint withdrawn");
            }
            return Ok(());
        }
        if st.exposed.get(domain).is_some_and(|e| e.port == port) {
            return Ok(());
        }
        if let Some((other, _)) = st.exposed.iter().find(|(_, e)| e.port == port) {
            return Err(ErrorMsg::truncated(
                ErrorCode::BadRequest,
                &format!(
                    "port {port} already carries guest {other}'s stream; give guest {domain} \
                     another port (remote-port)"
                ),
            ));
        }
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)
        .map_err(|e| {
            ErrorMsg::truncated(
                ErrorCode::Internal,
                &format!(
                    "cannot listen on 127.0.0.1:{port} for guest {domain}'s stream: {e} (is \
                     another program using the port?)"
                ),
            )
        })?;
    let task = tokio::spawn(accept_loop(Arc::clone(host), domain.to_owned(), listener));
    let mut st = host.lock();
    let previous = st.exposed.insert(
        domain.to_owned(),
        Exposure {
            port,
            listener: task.abort_handle(),
        },
    );
    if let Some(old) = previous {
        old.listener.abort();
    }
    tracing::info!(guest = domain, port, "stream endpoint offered on 127.0.0.1");
    Ok(())
}

async fn accept_loop(host: Arc<Host>, domain: String, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => open(&host, &domain, tcp),
            Err(e) => {
                tracing::warn!(guest = %domain, error = %e, "accept on the stream endpoint failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection for guest `domain`'s endpoint: open a stream on its link, or close it (no
/// link here, a guest daemon without streams, or the guest's streams all in use). Pacemaker
/// then retries within its connect timeout.
fn open(host: &Arc<Host>, domain: &str, tcp: TcpStream) {
    let mut st = host.lock();
    let found = st
        .links
        .iter()
        .find(|(_, l)| l.origin.domain() == domain && l.state != LinkState::Connecting)
        .map(|(id, _)| *id);
    let Some(link) = found else {
        tracing::info!(
            guest = domain,
            "stream connection closed: this host has no link to the guest"
        );
        return;
    };
    let Some(l) = st.links.get_mut(&link) else {
        return;
    };
    // A random id: stream data of a previous host daemon life may still be queued in the
    // guest (it is written after the guest learns of the change), and must not match a
    // stream of this life.
    let sid = loop {
        let c = crate::rand_u64() >> 1;
        if c != 0 && !l.streams.contains_key(&c) {
            break c;
        }
    };
    let span = tracing::info_span!("guest link", guest = %domain);
    let _enter = span.enter();
    if l.guest_version < STREAM_VERSION {
        tracing::warn!(
            "stream connection closed: the guest's vm-connectd does not offer streams (it has \
             not said Hello, or it is older than protocol version {STREAM_VERSION})"
        );
        return;
    }
    if l.streams.len() >= MAX_STREAMS_PER_GUEST {
        tracing::warn!(
            "stream connection closed: the guest already has {MAX_STREAMS_PER_GUEST} streams open"
        );
        return;
    }
    let (Some(outbox), Some(bulk)) = (l.outbox.clone(), l.bulk.clone()) else {
        return;
    };
    let Ok(open) = StreamOpen::new(STREAM_WINDOW) else {
        return;
    };
    if !offer(&outbox, Message::StreamOpen(open).to_frame(sid)) {
        tracing::warn!("stream connection closed: the guest is not reading its channel");
        return;
    }
    let tx = LinkTx::new(move |f| offer(&outbox, f), bulk);
    let h = Arc::clone(host);
    // no credit until the guest accepts: nothing is read from the connection before
    let stream = Stream::start(sid, tcp, tx, 0, STREAM_WINDOW, move |sid| {
        if let Some(l) = h.lock().links.get_mut(&link) {
            l.streams.remove(&sid);
        }
    });
    l.streams.insert(sid, stream);
    l.streams_opened += 1;
    tracing::info!(stream = sid, "stream opened to the guest");
}

/// A stream frame from the guest on link `link`; returns whether it broke the rules (it
/// counts against the link's budget).
pub(super) fn on_frame(host: &Host, link: LinkId, sid: u64, msg: Message) -> bool {
    let mut st = host.lock();
    let Some(l) = st.links.get_mut(&link) else {
        return false;
    };
    let result = match msg {
        Message::StreamData(d) => match l.streams.get_mut(&sid) {
            Some(s) => s.on_data(d.into_data()),
            None => Ok(()),
        },
        Message::StreamCredit(c) => match l.streams.get(&sid) {
            Some(s) => s.on_credit(c.increment()),
            None => Ok(()),
        },
        Message::StreamClose(c) => {
            tracing::info!(stream = sid, reason = %c.reason(), detail = c.detail(), "the guest closed the stream");
            if c.reason() != StreamCloseReason::Closed {
                if let Some(s) = l.streams.remove(&sid) {
                    s.abort();
                }
            } else if l.streams.get_mut(&sid).is_some_and(Stream::on_peer_close) {
                l.streams.remove(&sid);
            }
            return false;
        }
        _ => return false,
    };
    // (frames for a stream no longer open are late: it closed while they were on the way)
    let Err(v) = result else {
        return false;
    };
    if let Some(s) = l.streams.remove(&sid) {
        s.abort();
    }
    if let Some(outbox) = &l.outbox {
        let close = vm_proto::StreamClose::truncated(StreamCloseReason::Violation, &v.to_string());
        let _ = offer(outbox, Message::StreamClose(close).to_frame(sid));
    }
    drop(st);
    offence(
        host,
        link,
        "stream",
        &format!("stream {sid}: {v}; stream closed"),
    );
    true
}

/// Closes every stream of a link whose guest side is gone (the link closed, or a new guest
/// daemon life): their TCP connections close at once, so Pacemaker reconnects (to this host's
/// endpoint, or to the new host's after a migration).
pub(super) fn abort_all(st: &mut State, link: LinkId) -> usize {
    let Some(l) = st.links.get_mut(&link) else {
        return 0;
    };
    let n = l.streams.len();
    for (_, s) in l.streams.drain() {
        s.abort();
    }
    n
}
