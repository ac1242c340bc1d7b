//! Frames over async byte streams: the protocol crate's decoder and encoder driven by tokio.
//!
//! A reader yields decoded frames and, separately, decode errors (offences by the peer: the
//! decoder has already resynchronised, so the caller logs and keeps reading). A writer task
//! owns the write half and drains a bounded queue, so a peer that stops reading can fill its
//! own queue but never blocks the code that routes frames for everybody else.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use vm_proto::{DecodeError, Decoder, Frame};

/// What the reader got.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed frame.
    Frame(Frame),
    /// Bytes that were not a valid frame (already skipped).
    Offence(DecodeError),
}

/// Reads frames from `R`.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    decoder: Decoder,
    buf: Box<[u8]>,
    received: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wrap a read half.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            decoder: Decoder::new(),
            // small: thousands of links each hold one; a frame spans several reads if it must
            buf: vec![0; 4 * 1024].into_boxed_slice(),
            received: 0,
        }
    }

    /// The read half (e.g. to watch it for a hang-up while not reading).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes the decoder has run through CRC-32C so far (its work; a small multiple of
    /// [`FrameReader::received`] at most, whatever the peer sends).
    pub fn checksummed(&self) -> u64 {
        self.decoder.checksummed_bytes()
    }

    /// Like [`FrameReader::next`], and when a partial frame is buffered and no byte arrives for
    /// `stall`, gives it up: the decoder reports it (`Truncated`, an offence) and looks for
    /// frames after its first byte, so that a writer that died mid-frame does not hold back
    /// the frames behind it (docs/protocol.md §4, "Stalls").
    pub async fn next_within(&mut self, stall: Duration) -> io::Result<Option<Incoming>> {
        loop {
            match self.decoder.next_frame() {
                Some(Ok(frame)) => return Ok(Some(Incoming::Frame(frame))),
                Some(Err(e)) => return Ok(Some(Incoming::Offence(e))),
                None => {}
            }
            let n = if self.decoder.buffered_len() > 0 {
                match tokio::time::timeout(stall, self.inner.read(&mut self.buf)).await {
                    Ok(read) => read?,
                    Err(_) => match self.decoder.abandon_partial() {
                        Some(e) => return Ok(Some(Incoming::Offence(e))),
                        None => continue,
                    },
                }
            } else {
                self.inner.read(&mut self.buf).await?
            };
            if n == 0 {
                return Ok(None);
            }
            self.received += n as u64;
            self.decoder.feed(&self.buf[..n]);
        }
    }

    /// The next frame or offence; `Ok(None)` at end of stream.
    pub async fn next(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            match self.decoder.next_frame() {
                Some(Ok(frame)) => return Ok(Some(Incoming::Frame(frame))),
                Some(Err(e)) => return Ok(Some(Incoming::Offence(e))),
                None => {}
            }
            let n = self.inner.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.received += n as u64;
            self.decoder.feed(&self.buf[..n]);
        }
    }
}

/// Sending side of a peer's bounded outgoing queue.
pub type Outbox = mpsc::Sender<Frame>;

/// Outgoing frames queued per peer before frames for it are dropped.
pub const OUTBOX_FRAMES: usize = 64;

/// Per-frame write deadline: a peer that does not read for this long gets its connection
/// closed by the writer task rather than holding memory forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Spawn the writer task for `w`; returns the queue to send frames through. The task ends
/// (dropping the write half) when every sender is gone or a write fails or times out.
pub fn spawn_writer<W>(mut w: W, label: String) -> Outbox
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Frame>(OUTBOX_FRAMES);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let bytes = frame.to_bytes();
            if !write_within(&mut w, &bytes, &label).await {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    tx
}

/// Write `bytes` to a peer within [`WRITE_TIMEOUT`]; `false` (logged) when the write failed or
/// the peer did not read in time, and its connection is to be closed.
async fn write_within<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8], label: &str) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(bytes)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(peer = %label, error = %e, "write failed");
            false
        }
        Err(_) => {
            tracing::warn!(peer = %label, "peer has not read for {WRITE_TIMEOUT:?}; closing its connection");
            false
        }
    }
}

/// Queue `frame` for a peer without waiting; `false` when the peer's queue is full or gone
/// (the frame is dropped: one slow peer must not hold up anyone else).
pub fn offer(outbox: &Outbox, frame: Frame) -> bool {
    outbox.try_send(frame).is_ok()
}

/// Bulk frames (stream data) queued per guest link: the stream tasks wait for room, so this
/// bounds what stream data a link holds besides its streams' windows.
pub const BULK_FRAMES: usize = 4;

/// Spawn the writer task of a guest link: like [`spawn_writer`], with a second, *bulk* queue
/// of encoded frames (stream data, docs/protocol.md §16) that the writer serves only when no
/// frame waits in the control queue. A control frame (a request's answer, a heartbeat) thus
/// waits behind at most the one bulk frame being written, whatever the streams send.
pub fn spawn_link_writer<W>(mut w: W, label: String) -> (Outbox, mpsc::Sender<Vec<u8>>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Frame>(OUTBOX_FRAMES);
    let (bulk_tx, mut bulk_rx) = mpsc::channel::<Vec<u8>>(BULK_FRAMES);
    tokio::spawn(async move {
        loop {
            let bytes = tokio::select! {
                biased;
                frame = rx.recv() => match frame {
                    Some(f) => f.to_bytes(),
                    None => break,
                },
                Some(bytes) = bulk_rx.recv() => bytes,
            };
            if !write_within(&mut w, &bytes, &label).await {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    (tx, bulk_tx)
}
