//! sqlx 0.9.0 opens its TCP connections without `TCP_NODELAY` (sqlx issue #4335, fixed but not
//! yet released), so Nagle's algorithm holds back a small message sent while the one before it
//! is unacknowledged (a COPY's `CopyDone` after its data, a query after a `COPY`) until the
//! server's delayed ACK, 40 ms later: about a quarter of a second per small report. Until sqlx
//! sets the option itself, each new connection sets it on this process's sockets connected to
//! the database's port. Remove this module with the sqlx release that has the fix.

/// Sets `TCP_NODELAY` on every TCP socket of this process whose peer's port is `port`.
#[cfg(target_os = "linux")]
pub(super) fn to_database_port(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};

    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in descriptors.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // Sockets only: their link reads "socket:[inode]".
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        });
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is borrowed for the two calls below and never closed here.
        // Another thread may close it meanwhile: the calls then fail (EBADF) or, should the
        // number be reused at once, apply to another socket, where TCP_NODELAY does no harm.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let to_database = socket
            .peer_addr()
            .ok()
            .and_then(|peer| peer.as_socket())
            .is_some_and(|peer| peer.port() == port);
        if to_database {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

/// Other systems: nothing (the workaround reads Linux's `/proc`).
#[cfg(not(target_os = "linux"))]
pub(super) fn to_database_port(_port: u16) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn sockets_to_the_port_get_nodelay_and_others_do_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_database = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let elsewhere = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_database.nodelay().unwrap());
        super::to_database_port(listener.local_addr().unwrap().port());
        assert!(to_database.nodelay().unwrap());
        assert!(!elsewhere.nodelay().unwrap());
    }
}
