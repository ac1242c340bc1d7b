//! Byte streams over a guest link (docs/protocol.md §16): one TCP connection on either side,
//! spliced through StreamData frames, with credit-based flow control.
//!
//! The same machinery serves both ends. The host daemon accepts a TCP connection on the
//! loopback port offered for a guest and opens a stream; the guest daemon connects to its local
//! target (pacemaker-remoted) and accepts it. From then on each side:
//!
//! - reads its TCP connection in chunks of at most [`MAX_STREAM_CHUNK`] bytes and sends each as
//!   a StreamData, but only within the credit the other side granted (it waits for more: the
//!   TCP connection is then simply not read, and its sender's TCP window closes);
//! - writes the other side's StreamData to its TCP connection, and grants the bytes back
//!   (StreamCredit) once written. It never holds more than the window it granted
//!   ([`STREAM_WINDOW`]): data beyond the credit is a violation that ends the stream.
//!
//! Data and StreamClose go through the link's *bulk* queue, which its writer serves only when
//! no control frame (requests, answers, heartbeats, credits) waits, so a saturating stream adds
//! at most one chunk's write to a control frame's way out ([`crate::frames::spawn_link_writer`]).
//! Streams share the bulk queue in the order they wait for it (tokio's channels serve waiting
//! senders first come, first served), so no stream starves another.
//!
//! StreamClose Closed ends one direction, as a TCP FIN does: a side whose TCP connection's read
//! side ends sends it after its last data, and the other side shuts down its connection's write
//! side once it has written everything before it. A stream is over when both directions have
//! ended. Any other StreamClose (Refused, Limit, Violation) ends both at once, and so does the
//! loss of the link ([`Stream::abort`]): after a migration Pacemaker reconnects to the new
//! host's endpoint instead of talking into a dead link.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use vm_proto::{
    Frame, MAX_STREAM_CHUNK, MAX_STREAM_WINDOW, Message, StreamClose, StreamCloseReason,
    StreamCredit, StreamData,
};

/// The window each side grants the other per stream: the most bytes of one stream a daemon
/// holds for its TCP connection, and so the most stream data that can sit in the channel ahead
/// of a control frame. 64 KiB still moves ~100 MiB/s through a simulated channel
/// (docs/benchmarks.md), far more than Pacemaker's remote protocol needs, while a request's
/// answer waits behind at most that much; 4 streams per guest bound a guest's stream memory
/// on the host to 256 KiB.
pub const STREAM_WINDOW: u32 = 64 * 1024;

/// Streams one guest link may carry at once (on the host: TCP connections beyond it are
/// closed at once; in the guest: StreamOpen beyond it is answered StreamClose Limit).
/// Pacemaker keeps one connection per guest node; the rest is room for a reconnection that
/// overlaps the old connection's end.
pub const MAX_STREAMS_PER_GUEST: usize = 4;

/// [`Stream`]'s `done` bits: our TCP connection's read side ended (StreamClose Closed sent),
/// and the peer's StreamClose Closed arrived.
const READ_DONE: u8 = 1;
const PEER_CLOSED: u8 = 2;

/// How long a side whose own direction ended waits for the peer's StreamClose before it
/// forgets the stream anyway (a peer that never answers, e.g. a guest daemon that never
/// accepted the StreamOpen, must not hold one of the guest's streams forever).
pub const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(30);

/// Written bytes are granted back once this many have accumulated, or when the writer has
/// nothing more queued (so a small exchange is never left waiting for credit).
const CREDIT_BATCH: u32 = STREAM_WINDOW / 4;

/// How a stream's frames leave on its link.
#[derive(Clone)]
pub struct LinkTx {
    /// Control frames (StreamCredit): queued without waiting, ahead of any bulk frame.
    control: Arc<dyn Fn(Frame) -> bool + Send + Sync>,
    /// StreamData and StreamClose, encoded: the senders wait for room (back-pressure, never
    /// dropped), and the link's writer serves them only when no control frame waits.
    bulk: mpsc::Sender<Vec<u8>>,
}

impl std::fmt::Debug for LinkTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTx").finish_non_exhaustive()
    }
}

impl LinkTx {
    /// A link's two ways out.
    pub fn new(
        control: impl Fn(Frame) -> bool + Send + Sync + 'static,
        bulk: mpsc::Sender<Vec<u8>>,
    ) -> LinkTx {
        LinkTx {
            control: Arc::new(control),
            bulk,
        }
    }

    /// Sends a control frame now; false when the link's queue is full or gone.
    pub fn control(&self, frame: Frame) -> bool {
        (self.control)(frame)
    }
}

/// A stream rule the peer broke; the stream ends with StreamClose Violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// StreamData beyond the credit granted.
    #[error("{len} bytes of stream data with only {credit} bytes of credit granted")]
    Overrun {
        /// Bytes received.
        len: usize,
        /// Credit the peer had.
        credit: u32,
    },
    /// A StreamCredit that would give this side more credit than any window allows.
    #[error("a credit of {increment} bytes on top of {held} exceeds the largest window")]
    Credit {
        /// The increment.
        increment: u32,
        /// Credit already held.
        held: usize,
    },
}

/// One open stream, as the daemon that routes its link's frames holds it.
#[derive(Debug)]
pub struct Stream {
    /// Data from the peer, to be written to the TCP connection (`None` once the peer closed).
    to_tcp: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Credit the peer still holds: bytes it may send before we grant more.
    peer_credit: Arc<AtomicU32>,
    /// Our credit towards the peer, in bytes (permits).
    credit: Arc<Semaphore>,
    reader: AbortHandle,
    writer: AbortHandle,
    /// Bytes sent to the link.
    sent: Arc<AtomicU64>,
    /// Which directions have ended ([`READ_DONE`], [`PEER_CLOSED`]).
    done: Arc<AtomicU8>,
}

impl Stream {
    /// Splices `tcp` onto stream `id` of a link: this side may send `credit` bytes before the
    /// peer grants more (0 on the host until the guest accepts), and the peer `granted` bytes.
    /// `on_end(id)` is called when the TCP connection's read side ends (its peer closed it, or
    /// it failed) after the peer's StreamClose Closed ([`Stream::on_peer_close`]) came: the
    /// stream is over and the caller forgets it.
    pub fn start(
        id: u64,
        tcp: TcpStream,
        tx: LinkTx,
        credit: u32,
        granted: u32,
        on_end: impl FnOnce(u64) + Send + 'static,
    ) -> Stream {
        let _ = tcp.set_nodelay(true);
        let (mut rd, mut wr) = tcp.into_split();
        let credit = Arc::new(Semaphore::new(credit as usize));
        let peer_credit = Arc::new(AtomicU32::new(granted));
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU8::new(0));
        let (to_tcp, mut from_peer) = mpsc::unbounded_channel::<Vec<u8>>();

        let (c, out, counted) = (Arc::clone(&credit), tx.clone(), Arc::clone(&sent));
        let ended = Arc::clone(&done);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_STREAM_CHUNK];
            let why = loop {
                // wait for some credit, then read at most what it allows (the TCP connection
                // is not read meanwhile, so its sender's window closes)
                let Ok(first) = c.acquire().await else {
                    return;
                };
                first.forget();
                let more = c.available_permits().min(MAX_STREAM_CHUNK - 1);
                if let Ok(p) = c.try_acquire_many(more as u32) {
                    p.forget();
                }
                let room = 1 + more;
                let n = match rd.read(buf.get_mut(..room).unwrap_or_default()).await {
                    Ok(0) => break "the connection closed".to_owned(),
                    Ok(n) => n,
                    Err(e) => break format!("reading the connection failed: {e}"),
                };
                c.add_permits(room - n);
                let data = buf.get(..n).unwrap_or_default().to_vec();
                let Ok(chunk) = StreamData::new(data) else {
                    return;
                };
                let frame = Message::StreamData(chunk).to_frame(id);
                if out.bulk.send(frame.to_bytes()).await.is_err() {
                    return;
                }
                counted.fetch_add(n as u64, Ordering::Relaxed);
            };
            tracing::debug!(stream = id, "{why}; stream closed");
            let frame =
                Message::StreamClose(StreamClose::truncated(StreamCloseReason::Closed, &why))
                    .to_frame(id);
            let _ = out.bulk.send(frame.to_bytes()).await;
            if ended.fetch_or(READ_DONE, Ordering::AcqRel) & PEER_CLOSED != 0 {
                on_end(id);
                return;
            }
            tokio::time::sleep(CLOSE_LINGER).await;
            if ended.fetch_or(PEER_CLOSED, Ordering::AcqRel) & PEER_CLOSED == 0 {
                tracing::debug!(
                    stream = id,
                    "the peer did not close its direction within {CLOSE_LINGER:?}; stream forgotten"
                );
                on_end(id);
            }
        })
        .abort_handle();

        let (pc, out) = (Arc::clone(&peer_credit), tx);
        let writer = tokio::spawn(async move {
            let mut returned: u32 = 0;
            while let Some(chunk) = from_peer.recv().await {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
                returned = returned.saturating_add(chunk.len() as u32);
                if returned >= CREDIT_BATCH || from_peer.is_empty() {
                    // the peer may send again what has left our hands; count it before the
                    // grant leaves, so its data never arrives before the credit is ours
                    pc.fetch_add(returned, Ordering::AcqRel);
                    if let Ok(grant) = StreamCredit::new(returned) {
                        let _ = out.control(Message::StreamCredit(grant).to_frame(id));
                    }
                    returned = 0;
                }
            }
            // the peer closed: what it sent is written; end our side of the connection
            let _ = wr.shutdown().await;
        })
        .abort_handle();

        Stream {
            to_tcp: Some(to_tcp),
            peer_credit,
            credit,
            reader,
            writer,
            sent,
            done,
        }
    }

    /// The peer's StreamData: queued for the TCP connection if within the peer's credit.
    pub fn on_data(&mut self, data: Vec<u8>) -> Result<(), Violation> {
        let len = data.len();
        let taken = self
            .peer_credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                u32::try_from(len).ok().and_then(|n| c.checked_sub(n))
            });
        if let Err(credit) = taken {
            return Err(Violation::Overrun { len, credit });
        }
        if let Some(tx) = &self.to_tcp {
            let _ = tx.send(data);
        }
        Ok(())
    }

    /// The peer's StreamCredit: this side may send `increment` bytes more.
    pub fn on_credit(&self, increment: u32) -> Result<(), Violation> {
        let held = self.credit.available_permits();
        if held.saturating_add(increment as usize) > MAX_STREAM_WINDOW as usize {
            return Err(Violation::Credit { increment, held });
        }
        self.credit.add_permits(increment as usize);
        Ok(())
    }

    /// The peer's StreamClose Closed: it sends nothing more; what it sent is written, then
    /// our connection's write side is shut down. Returns whether the stream is over (our side
    /// had ended too): the caller then forgets it; else it stays for the credits the peer
    /// still grants.
    pub fn on_peer_close(&mut self) -> bool {
        self.to_tcp = None;
        self.done.fetch_or(PEER_CLOSED, Ordering::AcqRel) & READ_DONE != 0
    }

    /// The link is gone (or the stream broke the rules): close the TCP connection now,
    /// dropping what is queued.
    pub fn abort(self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Bytes sent to the link so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A loopback TCP pair.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// A link whose control frames and bulk bytes are collected.
    fn link() -> (
        LinkTx,
        mpsc::UnboundedReceiver<Frame>,
        mpsc::Receiver<Vec<u8>>,
    ) {
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (bulk_tx, bulk_rx) = mpsc::channel(4);
        (
            LinkTx::new(move |f| ctl_tx.send(f).is_ok(), bulk_tx),
            ctl_rx,
            bulk_rx,
        )
    }

    fn decode(bytes: &[u8]) -> (u64, Message) {
        let mut d = vm_proto::Decoder::new();
        d.feed(bytes);
        let f = d.next_frame().unwrap().unwrap();
        (f.id(), f.message().unwrap())
    }

    #[tokio::test]
    async fn data_waits_for_credit_and_is_chunked() {
        let (mut app, tcp) = pair().await;
        let (tx, _ctl, mut bulk) = link();
        let s = Stream::start(5, tcp, tx, 0, STREAM_WINDOW, |_| {});
        app.write_all(&vec![1u8; 40_000]).await.unwrap();
        // no credit: nothing goes out
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), bulk.recv())
                .await
                .is_err(),
            "data was sent without credit"
        );
        s.on_credit(20_000).unwrap();
        let mut got = 0;
        while got < 20_000 {
            let (id, m) = decode(&bulk.recv().await.unwrap());
            assert_eq!(id, 5);
            let Message::StreamData(d) = m else {
                panic!("{m:?}")
            };
            assert!(d.data().len() <= MAX_STREAM_CHUNK);
            got += d.data().len();
        }
        assert_eq!(got, 20_000, "exactly the credit granted, no more");
        let more = tokio::time::timeout(std::time::Duration::from_millis(200), bulk.recv()).await;
        assert!(more.is_err(), "more than the credit was sent");
        s.abort();
    }

    #[tokio::test]
    async fn received_data_is_written_and_granted_back_and_overruns_are_refused() {
        let (mut app, tcp) = pair().await;
        let (tx, mut ctl, _bulk) = link();
        let mut s = Stream::start(7, tcp, tx, STREAM_WINDOW, 100, |_| {});
        s.on_data(vec![9u8; 60]).unwrap();
        assert_eq!(
            s.on_data(vec![9u8; 41]),
            Err(Violation::Overrun {
                len: 41,
                credit: 40
            }),
            "more than the credit left"
        );
        let mut buf = [0u8; 60];
        app.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [9u8; 60]);
        // the 60 bytes written are granted back
        let f = ctl.recv().await.unwrap();
        assert_eq!(f.id(), 7);
        assert_eq!(
            f.message().unwrap(),
            Message::StreamCredit(StreamCredit::new(60).unwrap())
        );
        s.on_data(vec![1u8; 100]).unwrap();
        assert!(matches!(
            s.on_credit(MAX_STREAM_WINDOW),
            Err(Violation::Credit { .. })
        ));
        s.abort();
    }

    #[tokio::test]
    async fn tcp_close_sends_stream_close_and_peer_close_closes_tcp() {
        let (app, tcp) = pair().await;
        let (tx, _ctl, mut bulk) = link();
        let (ended_tx, mut ended) = mpsc::unbounded_channel();
        let mut s = Stream::start(3, tcp, tx, STREAM_WINDOW, STREAM_WINDOW, move |id| {
            let _ = ended_tx.send(id);
        });
        drop(app);
        let (id, m) = decode(&bulk.recv().await.unwrap());
        assert_eq!(id, 3);
        assert!(
            matches!(&m, Message::StreamClose(c) if c.reason() == StreamCloseReason::Closed),
            "{m:?}"
        );
        assert!(s.on_peer_close(), "both directions ended");
        assert!(ended.try_recv().is_err(), "the peer's close came last");

        let (mut app, tcp) = pair().await;
        let (tx, _ctl, mut bulk) = link();
        let mut s = Stream::start(4, tcp, tx, STREAM_WINDOW, STREAM_WINDOW, |_| {});
        s.on_data(b"last words".to_vec()).unwrap();
        assert!(!s.on_peer_close(), "our direction is still open");
        let mut got = Vec::new();
        app.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words", "written, then the write side shut down");
        // half-closed: our direction still carries data
        app.write_all(b"reply").await.unwrap();
        drop(app);
        let mut frames = Vec::new();
        while frames.len() < 2 {
            frames.push(decode(&bulk.recv().await.unwrap()).1);
        }
        assert_eq!(
            frames[0],
            Message::StreamData(StreamData::new(b"reply".to_vec()).unwrap())
        );
        assert!(matches!(&frames[1], Message::StreamClose(_)));
    }
}
