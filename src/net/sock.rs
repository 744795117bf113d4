//! `Loop::sock_*`: asyncio's low-level socket calls, on any non-blocking socket the
//! caller owns.
//!
//! Each call tries the syscall first; only on `WouldBlock` does it wait, through a
//! one-shot [`FdReady`] (the level-triggered `add_reader` / `add_writer` machinery),
//! and then tries again. That wait is the only registration a call makes, and it is
//! gone when the wait ends and when the future is dropped: a `sock_*` future leaves
//! nothing registered behind, whether it completed or was cancelled.
//!
//! The promises (cancellation, one waiter per direction) are the public docs of
//! `evloop::net`, "Low-level socket calls".

use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use socket2::{SockAddr, SockRef, Socket};

use super::ready::FdReady;
use crate::Loop;

/// Runs `op` until it does not say `WouldBlock` (or `Interrupted`), waiting for the
/// socket to be readable (`write == false`) or writable in between.
async fn retry<R>(
    lp: &Loop,
    sock: &SockRef<'_>,
    write: bool,
    mut op: impl FnMut(&Socket) -> io::Result<R>,
) -> io::Result<R> {
    loop {
        match op(sock) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                FdReady::on(lp, sock.as_raw_fd(), write).await?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// The socket of a `sock_*` call, once checked to be non-blocking.
fn nonblocking<'s>(sock: &'s impl AsFd, what: &str) -> io::Result<SockRef<'s>> {
    let sock = SockRef::from(sock);
    if sock.nonblocking()? {
        Ok(sock)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "Loop::{what} needs a non-blocking socket: call set_nonblocking(true) on it \
                 first"
            ),
        ))
    }
}

/// `recv` / `recvfrom` into the spare capacity of `buf`, which grows by what came.
fn recv_into_spare<R>(
    buf: &mut Vec<u8>,
    recv: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<(usize, R)>,
) -> io::Result<R> {
    let (n, r) = recv(buf.spare_capacity_mut())?;
    let len = buf.len() + n;
    assert!(
        len <= buf.capacity(),
        "recv reported more bytes than it was given"
    );
    // SAFETY: `recv` (socket2's `recv` / `recv_from`, i.e. the syscall) wrote `n`
    // bytes at the start of the spare capacity, so the first `len` bytes are
    // initialised, and `len <= capacity` is checked just above.
    unsafe { buf.set_len(len) };
    Ok(r)
}

impl Loop {
    /// Receives up to `n` bytes from `sock` (asyncio's `sock_recv`); empty at end of
    /// stream. Waits until data comes; `n == 0` returns empty at once (whatever the
    /// socket's kind: a Unix stream's `recv` of 0 bytes would wait for data).
    ///
    /// Cancel-safe: a cancelled call consumed nothing (see
    /// [Low-level socket calls](crate::net#low-level-socket-calls)). The buffer is
    /// allocated once, `n` bytes.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// let lp = evloop::Loop::new().unwrap();
    /// let (a, b) = UnixStream::pair().unwrap();
    /// a.set_nonblocking(true).unwrap();
    /// b.set_nonblocking(true).unwrap();
    /// let got = lp.run_until_complete(async {
    ///     lp.sock_sendall(&a, b"ping").await?;
    ///     lp.sock_recv(&b, 16).await
    /// });
    /// assert_eq!(got.unwrap().unwrap(), b"ping");
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for a blocking socket (checked when awaited); the socket's own
    /// errors; `ResourceBusy` if another reader of the fd replaced this call's wait.
    pub async fn sock_recv(&self, sock: &impl AsFd, n: usize) -> io::Result<Vec<u8>> {
        let sock = nonblocking(sock, "sock_recv")?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(n);
        retry(self, &sock, false, |s| {
            recv_into_spare(&mut buf, |b| s.recv(b).map(|n| (n, ())))
        })
        .await?;
        Ok(buf)
    }

    /// Receives into `buf` (asyncio's `sock_recv_into`); returns how many bytes came,
    /// 0 at end of stream (and at once for an empty `buf`). See
    /// [`sock_recv`](Loop::sock_recv).
    ///
    /// # Errors
    /// As [`sock_recv`](Loop::sock_recv).
    pub async fn sock_recv_into(&self, sock: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
        let sock = nonblocking(sock, "sock_recv_into")?;
        if buf.is_empty() {
            return Ok(0);
        }
        retry(self, &sock, false, |mut s| s.read(buf)).await
    }

    /// Receives one datagram of up to `n` bytes and its sender's address (asyncio's
    /// `sock_recvfrom`); a longer datagram is truncated to `n` bytes, as `recvfrom`
    /// does. Cancel-safe, as [`sock_recv`](Loop::sock_recv).
    ///
    /// # Errors
    /// As [`sock_recv`](Loop::sock_recv).
    pub async fn sock_recvfrom(
        &self,
        sock: &impl AsFd,
        n: usize,
    ) -> io::Result<(Vec<u8>, SockAddr)> {
        let sock = nonblocking(sock, "sock_recvfrom")?;
        let mut buf = Vec::with_capacity(n);
        let addr = retry(self, &sock, false, |s| {
            recv_into_spare(&mut buf, |b| s.recv_from(b))
        })
        .await?;
        Ok((buf, addr))
    }

    /// Sends all of `data` (asyncio's `sock_sendall`), waiting while the socket's
    /// buffer is full. Never raises `SIGPIPE`: a peer that went away is
    /// `Err(BrokenPipe)`.
    ///
    /// Cancelled (dropped) before it completes, it may have sent a prefix of `data`:
    /// no byte is sent twice, and what to do about the rest is the caller's decision
    /// (see [Low-level socket calls](crate::net#low-level-socket-calls)).
    ///
    /// # Errors
    /// `InvalidInput` for a blocking socket; the socket's own errors (what was sent
    /// before one stays sent); `ResourceBusy` if another writer of the fd replaced
    /// this call's wait.
    pub async fn sock_sendall(&self, sock: &impl AsFd, data: &[u8]) -> io::Result<()> {
        let sock = nonblocking(sock, "sock_sendall")?;
        let mut sent = 0;
        while sent < data.len() {
            let n = retry(self, &sock, true, |s| {
                s.send_with_flags(&data[sent..], libc::MSG_NOSIGNAL)
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            sent += n;
        }
        Ok(())
    }

    /// Sends one datagram to `addr` (asyncio's `sock_sendto`); returns the bytes sent.
    /// Waits while the socket's buffer is full.
    ///
    /// # Errors
    /// As [`sock_sendall`](Loop::sock_sendall).
    pub async fn sock_sendto(
        &self,
        sock: &impl AsFd,
        data: &[u8],
        addr: impl Into<SockAddr>,
    ) -> io::Result<usize> {
        let addr = addr.into();
        let sock = nonblocking(sock, "sock_sendto")?;
        retry(self, &sock, true, |s| {
            s.send_to_with_flags(data, &addr, libc::MSG_NOSIGNAL)
        })
        .await
    }

    /// Connects `sock` to `addr` (asyncio's `sock_connect`), waiting until the
    /// connection is established or fails (a refused connection is
    /// `Err(ConnectionRefused)`).
    ///
    /// A cancelled call leaves the kernel connecting; calling this again with the
    /// same address waits for that attempt and reports its outcome.
    ///
    /// # Errors
    /// `InvalidInput` for a blocking socket; the connection's error.
    pub async fn sock_connect(
        &self,
        sock: &impl AsFd,
        addr: impl Into<SockAddr>,
    ) -> io::Result<()> {
        let addr = addr.into();
        let sock = nonblocking(sock, "sock_connect")?;
        loop {
            match sock.connect(&addr) {
                Ok(()) => return Ok(()),
                // A Unix listener's backlog is full: try again once writable.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINPROGRESS | libc::EALREADY | libc::EINTR)
                    ) =>
                {
                    return self.finish_connect(&sock).await;
                }
                Err(e) => return Err(e),
            }
            FdReady::on(self, sock.as_raw_fd(), true).await?;
        }
    }

    /// Waits for a connect in progress to end: writable, then no pending error.
    async fn finish_connect(&self, sock: &SockRef<'_>) -> io::Result<()> {
        loop {
            FdReady::on(self, sock.as_raw_fd(), true).await?;
            if let Some(e) = sock.take_error()? {
                return Err(e);
            }
            match sock.peer_addr() {
                Ok(_) => return Ok(()),
                // Spurious: still connecting.
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Accepts a connection on the listening `sock` (asyncio's `sock_accept`): the
    /// new socket (non-blocking, close-on-exec) and the peer's address. Cancel-safe:
    /// a cancelled call accepted nothing.
    ///
    /// # Errors
    /// `InvalidInput` for a blocking socket; `accept`'s own errors.
    pub async fn sock_accept(&self, sock: &impl AsFd) -> io::Result<(Socket, SockAddr)> {
        let sock = nonblocking(sock, "sock_accept")?;
        retry(self, &sock, false, |s| {
            s.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        })
        .await
    }
}
