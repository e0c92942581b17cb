//! Playing a bad peer: a raw connection to a node's replication port that
//! speaks frames by hand (over plain TCP or TLS), and the test binary's logs
//! captured so that a test can assert the reason a node logged.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use metawal::codec::FrameCodec;
use metawal::frame::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use crate::CLUSTER;

/// Logs of this test binary, captured for assertions on logged reasons.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a captured log line contains every one of `parts`.
pub fn logged(logs: &Mutex<Vec<u8>>, parts: &[&str]) -> bool {
    let logs = logs.lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

/// A byte stream a [`RawPeer`] runs over.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// A raw connection to a replication port, playing the leader's side.
pub struct RawPeer {
    pub stream: Box<dyn PeerIo>,
    codec: FrameCodec,
    buf: BytesMut,
    limit: Duration,
}

impl RawPeer {
    /// Plain TCP to `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> RawPeer {
        RawPeer::over(tokio::net::TcpStream::connect(addr).await.unwrap())
    }

    /// Over an established stream (e.g. TLS).
    pub fn over(stream: impl PeerIo + 'static) -> RawPeer {
        RawPeer {
            stream: Box::new(stream),
            codec: FrameCodec::new(16 * 1024 * 1024),
            buf: BytesMut::new(),
            limit: Duration::from_secs(10),
        }
    }

    /// The next frame, or None once the peer closed the connection (or the
    /// bytes are not a frame). Panics if nothing happens within 10 s.
    pub async fn next(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + self.limit;
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(f)) => return Some(f),
                Ok(None) => {}
                Err(_) => return None,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!(
                    "the node neither answered nor closed within {:?}",
                    self.limit
                ),
            }
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(&frame, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Read node `node`'s Challenge; return its nonce.
    pub async fn challenge_from(&mut self, node: u64) -> [u8; 16] {
        match self.next().await {
            Some(Frame::Challenge {
                cluster_id,
                node_id,
                nonce,
                ..
            }) => {
                assert_eq!(cluster_id, CLUSTER);
                assert_eq!(node_id, node);
                nonce.try_into().unwrap()
            }
            other => panic!("expected a Challenge, got {other:?}"),
        }
    }

    /// Read follower 2's Challenge; return its nonce.
    pub async fn challenge(&mut self) -> [u8; 16] {
        self.challenge_from(2).await
    }

    /// Expect the connection to be closed.
    pub async fn expect_closed(&mut self) {
        if let Some(f) = self.next().await {
            panic!("expected the connection to close, got {f:?}");
        }
    }
}
