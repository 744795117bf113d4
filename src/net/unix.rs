//! Async Unix-socket streams for tasks: `UnixListener` and `UnixStream`.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::path::Path;

use super::connect::connect_unix;
use super::poll_io::PollIo;
use super::server::{SocketFile, remove_stale_socket};

/// A Unix listening socket for tasks. A stale socket file at the path is removed
/// when binding; the file is removed again when the listener is dropped (if it is
/// still the file this listener bound).
pub struct UnixListener {
    io: PollIo<mio::net::UnixListener>,
    file: SocketFile,
}

impl UnixListener {
    /// Binds to `path`.
    ///
    /// # Panics
    /// Outside a running loop.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref().to_path_buf();
        remove_stale_socket(&path);
        let l = mio::net::UnixListener::bind(&path)?;
        let file = SocketFile::bound(path);
        match PollIo::new(l) {
            Ok(io) => Ok(UnixListener { io, file }),
            Err(e) => {
                file.remove();
                Err(e)
            }
        }
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        let (s, _) = self.io.read_op(|l| l.accept()).await?;
        Ok(UnixStream {
            io: PollIo::new(s)?,
        })
    }

    /// The path it listens on.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        self.file.remove();
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("path", &self.file.path())
            .finish()
    }
}

/// A Unix-socket connection for tasks; the same API as
/// [`TcpStream`](super::TcpStream).
pub struct UnixStream {
    io: PollIo<mio::net::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket at `path`.
    ///
    /// # Panics
    /// Outside a running loop.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        Ok(UnixStream {
            io: connect_unix(path.as_ref()).await?,
        })
    }

    /// A connected pair.
    ///
    /// # Panics
    /// Outside a running loop.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((
            UnixStream {
                io: PollIo::new(a)?,
            },
            UnixStream {
                io: PollIo::new(b)?,
            },
        ))
    }

    /// Reads what is available (waiting for at least one byte); `Ok(0)` at EOF.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf).await
    }

    /// Reads exactly `buf.len()` bytes.
    pub async fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        self.io.read_exact(buf).await
    }

    /// Writes some of `buf`.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.io.write_all(buf).await
    }

    /// Shuts down a half or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream").finish()
    }
}

#[cfg(feature = "futures-io")]
impl_futures_io!(UnixStream);
