//! Async Unix-socket streams for tasks: `UnixListener` and `UnixStream`.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::connect::connect_unix;
use super::poll_io::PollIo;
use super::server::{SocketFile, remove_stale_socket};

/// A Unix listening socket for tasks. A stale socket file at the path is removed
/// when binding; the file is removed again when the listener is dropped (if it is
/// still the file this listener bound). A listener taken [`from_std`] leaves its file
/// alone, and [`into_std`] hands the file over with the socket.
///
/// [`from_std`]: UnixListener::from_std
/// [`into_std`]: UnixListener::into_std
pub struct UnixListener {
    io: PollIo<mio::net::UnixListener>,
    /// The file this listener bound, to remove when dropped: `None` for a listener
    /// made elsewhere, and after `into_std`.
    file: Option<SocketFile>,
    /// The path of a listener made elsewhere (empty if it has none).
    std_path: PathBuf,
}

impl UnixListener {
    /// Binds to `path`.
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref().to_path_buf();
        remove_stale_socket(&path);
        let l = mio::net::UnixListener::bind(&path)?;
        let file = SocketFile::bound(path);
        match PollIo::new(l) {
            Ok(io) => Ok(UnixListener {
                io,
                file: Some(file),
                std_path: PathBuf::new(),
            }),
            Err(e) => {
                file.remove();
                Err(e)
            }
        }
    }

    /// Wraps a listener made elsewhere (it is made non-blocking). Its socket file is
    /// not this listener's to remove: it stays when the listener is dropped.
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn from_std(l: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        l.set_nonblocking(true)?;
        let std_path = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_default();
        Ok(UnixListener {
            io: PollIo::new(mio::net::UnixListener::from_std(l))?,
            file: None,
            std_path,
        })
    }

    /// Deregisters the listener from the loop and hands the socket back, still
    /// non-blocking (`set_nonblocking(false)` for blocking use). The socket file stays
    /// where it is: it belongs to the std listener now (std never removes it).
    pub fn into_std(mut self) -> io::Result<std::os::unix::net::UnixListener> {
        self.file = None; // keep the file: `Drop` removes nothing now
        Ok(OwnedFd::from(self.io.take_inner()).into())
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        let (s, _) = self.io.read_op(|l| l.accept()).await?;
        Ok(UnixStream {
            io: PollIo::new(s)?,
        })
    }

    /// The path it listens on (empty for an unnamed or abstract socket taken
    /// [`from_std`](UnixListener::from_std)).
    pub fn path(&self) -> &Path {
        self.file.as_ref().map_or(&self.std_path, |f| f.path())
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            file.remove();
        }
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("path", &self.path())
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

    /// Wraps a connected stream made elsewhere (it is made non-blocking).
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn from_std(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        s.set_nonblocking(true)?;
        Ok(UnixStream {
            io: PollIo::new(mio::net::UnixStream::from_std(s))?,
        })
    }

    /// Deregisters the stream from the loop and hands the socket back, still
    /// non-blocking (`set_nonblocking(false)` for blocking use).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        Ok(OwnedFd::from(self.io.into_inner()).into())
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

impl_as_fd!(UnixListener, UnixStream);

#[cfg(feature = "futures-io")]
impl_futures_io!(UnixStream);
