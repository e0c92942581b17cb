//! One peer connection (TCP, or TLS over TCP) inside an actor: a framed reader added as a stream and a
//! writer future, both tied to the actor's context so that cancelling them
//! ends the connection.
//!
//! Ending a connection on purpose ends it cleanly: the writer runs as its
//! own task (the actor's context holds the handle it reports through) and,
//! when the connection is closed, dropped, or its owner stops, it shuts the
//! stream down — a TLS `close_notify`, then the TCP FIN — within
//! [`SHUTDOWN_LIMIT`]. So the peer reads a clean end of stream, not "peer
//! closed connection without sending TLS close_notify", and a planned
//! close (a leadership transfer, a shutdown) is no warning on either side.
//!
//! This replaces actix's `FramedWrite`, whose buffer has no effective bound.
//! Here the actor puts frames into a bounded channel (`try_send`: a full
//! channel means "stop sending for now"), and the writer future feeds them to
//! tokio-util's `FramedWrite`, which applies backpressure from the socket, and
//! flushes once the channel is drained. Every item the reader yields carries
//! the connection's generation so frames from an older connection are
//! recognised and ignored.

use std::net::SocketAddr;

use actix::prelude::*;
use futures::{SinkExt, StreamExt};
use metawal::codec::{CodecError, FrameCodec};
use metawal::frame::Frame;
use std::pin::Pin;
use std::task::Poll;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::PeerStream;

/// A connection's read half (plain or TLS).
type ReadHalf = Pin<Box<dyn AsyncRead + Send>>;
/// A connection's write half (plain or TLS).
type WriteHalf = Pin<Box<dyn AsyncWrite + Send>>;

use crate::metrics::NodeMetrics;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Frames queued for one connection's writer.
pub(crate) const WRITE_QUEUE: usize = 64;

/// Longest a closing connection's writer waits to send its shutdown (TLS
/// `close_notify`) to a peer that does not read.
pub(crate) const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether a connection error is the connection ending abruptly (EOF
/// without `close_notify`, a reset, a broken pipe): see
/// [`crate::tls::is_abrupt_close`].
pub(crate) fn closed_abruptly(e: &CodecError) -> bool {
    matches!(e, CodecError::Io(io) if crate::tls::is_abrupt_close(io))
}

/// What a connection's reader yields.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A decoded frame.
    Frame(Frame),
    /// A framing or socket error; the connection is unusable.
    Error(CodecError),
    /// The peer closed the connection.
    Closed,
}

/// An [`Inbound`] item tagged with its connection generation.
#[derive(Debug)]
pub(crate) struct ConnInput {
    pub gen: u64,
    pub item: Inbound,
}

/// An actor that owns connections.
pub(crate) trait ConnOwner:
    Actor<Context = Context<Self>> + StreamHandler<ConnInput>
{
    /// The writer of connection `gen` ended (error, or its channel closed).
    fn writer_done(&mut self, gen: u64, result: Result<(), CodecError>, ctx: &mut Context<Self>);
}

/// A live connection's handles.
#[derive(Debug)]
pub(crate) struct Connection {
    pub gen: u64,
    pub peer: SocketAddr,
    tx: mpsc::Sender<Frame>,
    reader: SpawnHandle,
    writer: SpawnHandle,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The writer is behind; try later.
    Full,
    /// The connection is gone.
    Closed,
}

impl Connection {
    /// Start reading and writing `stream` as connection `gen`.
    pub fn attach<A: ConnOwner>(
        ctx: &mut Context<A>,
        stream: PeerStream,
        gen: u64,
        max_frame_bytes: usize,
        metrics: &NodeMetrics,
    ) -> Connection {
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        // Plain TCP splits into owned halves without a lock; a TLS stream
        // (one session state for both directions) through tokio's split.
        let (read_half, write_half): (ReadHalf, WriteHalf) = match stream {
            PeerStream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (Box::pin(r), Box::pin(w))
            }
            tls => {
                let (r, w) = tokio::io::split(tls);
                (Box::pin(r), Box::pin(w))
            }
        };
        let (sent, received) = metrics.byte_counters();
        let read_half = Counted {
            inner: read_half,
            bytes: received,
        };
        let write_half = Counted {
            inner: write_half,
            bytes: sent,
        };
        let reader = FramedRead::new(read_half, FrameCodec::new(max_frame_bytes))
            .map(move |r| ConnInput {
                gen,
                item: match r {
                    Ok(f) => Inbound::Frame(f),
                    Err(e) => Inbound::Error(e),
                },
            })
            .chain(futures::stream::once(async move {
                ConnInput {
                    gen,
                    item: Inbound::Closed,
                }
            }));
        let reader = ctx.add_stream(reader);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let sink = FramedWrite::new(write_half, FrameCodec::new(max_frame_bytes));
        // The writer is a task of its own, so that it can still shut the
        // stream down cleanly once its owner cancelled or dropped it; the
        // future in the owner's context holds `stop`, whose drop tells the
        // writer to stop now (see the module docs).
        let (stop, stopped) = oneshot::channel::<()>();
        let task = actix::spawn(write_loop(sink, rx, stopped));
        let writer = ctx.spawn(
            actix::fut::wrap_future::<_, A>(async move {
                let _stop = stop;
                match task.await {
                    Ok(result) => result,
                    Err(e) => Err(CodecError::Io(std::io::Error::other(format!(
                        "connection writer task failed: {e}"
                    )))),
                }
            })
            .map(move |res, act: &mut A, ctx| act.writer_done(gen, res, ctx)),
        );
        Connection {
            gen,
            peer,
            tx,
            reader,
            writer,
        }
    }

    /// Whether the writer queue has room for one more frame.
    pub fn has_room(&self) -> bool {
        self.tx.capacity() > 0
    }

    /// Queue a frame for sending.
    pub fn send(&self, frame: Frame) -> Result<(), QueueError> {
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }

    /// End the connection after the frames already queued are written:
    /// stop reading now; the writer drains its queue, flushes, shuts the
    /// stream down (TLS `close_notify`) and then reports to
    /// [`ConnOwner::writer_done`]. The owner must stay alive until then
    /// (stopping it makes the writer drop what is unsent and shut down).
    pub fn close_after_flush<A: ConnOwner>(self, ctx: &mut Context<A>) {
        ctx.cancel_future(self.reader);
        // Dropping `tx` ends the writer's loop once its queue is empty.
    }

    /// End the connection: stop reading and writing now (frames still
    /// queued are dropped), shut the stream down cleanly (bounded by
    /// [`SHUTDOWN_LIMIT`]), close the socket. The owner is not told.
    pub fn close<A: ConnOwner>(self, ctx: &mut Context<A>) {
        ctx.cancel_future(self.reader);
        ctx.cancel_future(self.writer);
    }
}

/// A stream half that counts the bytes through it (for the
/// `metawal_bytes_*` metrics): one atomic add per read or write call.
struct Counted<T> {
    inner: T,
    bytes: Counter,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.bytes.inc_by(n as u64);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.bytes.inc_by(*n as u64);
        }
        r
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Write what the owner queues until its sender is dropped (then shut down
/// after the last frame) or `stop` fires or is dropped (then shut down at
/// once, dropping what is unsent). The shutdown is bounded by
/// [`SHUTDOWN_LIMIT`]; its failure is not an error of the connection.
async fn write_loop(
    mut sink: FramedWrite<Counted<WriteHalf>, FrameCodec>,
    mut rx: mpsc::Receiver<Frame>,
    stop: oneshot::Receiver<()>,
) -> Result<(), CodecError> {
    let written = async {
        while let Some(frame) = rx.recv().await {
            sink.feed(frame).await?;
            while let Ok(frame) = rx.try_recv() {
                sink.feed(frame).await?;
            }
            SinkExt::<Frame>::flush(&mut sink).await?;
        }
        Ok::<(), CodecError>(())
    };
    let result = tokio::select! {
        r = written => r,
        _ = stop => Ok(()),
    };
    if result.is_ok() {
        let _ = tokio::time::timeout(SHUTDOWN_LIMIT, sink.get_mut().shutdown()).await;
    }
    result
}
