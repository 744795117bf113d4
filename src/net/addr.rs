//! Addresses: literal socket addresses at once, host names off the loop.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::Loop;

/// Something that names one or more socket addresses: a [`SocketAddr`], an
/// `(IpAddr, u16)`, or a `"host:port"` string / `(&str, u16)`, whose host name is
/// resolved with the system resolver on the loop's executor, never blocking the loop.
pub trait ToSocketAddrs {
    /// The addresses, at once if literal, or the host and port to resolve.
    #[doc(hidden)]
    fn to_target(&self) -> io::Result<Target>;
}

/// What a [`ToSocketAddrs`] gives: addresses, or a name to resolve.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum Target {
    /// Literal addresses.
    Addrs(Vec<SocketAddr>),
    /// `host:port` to resolve.
    Name(String),
}

impl ToSocketAddrs for SocketAddr {
    fn to_target(&self) -> io::Result<Target> {
        Ok(Target::Addrs(vec![*self]))
    }
}

impl ToSocketAddrs for (IpAddr, u16) {
    fn to_target(&self) -> io::Result<Target> {
        Ok(Target::Addrs(vec![SocketAddr::new(self.0, self.1)]))
    }
}

impl ToSocketAddrs for str {
    fn to_target(&self) -> io::Result<Target> {
        match self.parse::<SocketAddr>() {
            Ok(a) => Ok(Target::Addrs(vec![a])),
            Err(_) if self.rsplit_once(':').is_some() => Ok(Target::Name(self.to_owned())),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid socket address {self:?}: expected \"host:port\""),
            )),
        }
    }
}

impl ToSocketAddrs for String {
    fn to_target(&self) -> io::Result<Target> {
        self.as_str().to_target()
    }
}

impl ToSocketAddrs for (&str, u16) {
    fn to_target(&self) -> io::Result<Target> {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Ok(Target::Addrs(vec![SocketAddr::new(ip, self.1)])),
            Err(_) => Ok(Target::Name(format!("{}:{}", self.0, self.1))),
        }
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {
    fn to_target(&self) -> io::Result<Target> {
        (**self).to_target()
    }
}

/// Resolves `target` (on the executor if it is a name). Never empty on success.
pub(crate) async fn resolve(lp: &Loop, target: io::Result<Target>) -> io::Result<Vec<SocketAddr>> {
    let addrs = match target? {
        Target::Addrs(a) => a,
        Target::Name(name) => {
            let job = lp.run_in_executor(move || {
                std::net::ToSocketAddrs::to_socket_addrs(&name).map(|it| it.collect::<Vec<_>>())
            });
            job.await
                .map_err(|e| io::Error::other(format!("address resolution failed: {e}")))??
        }
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the name resolved to no address",
        ));
    }
    Ok(addrs)
}
