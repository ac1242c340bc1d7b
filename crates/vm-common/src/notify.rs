//! Readiness for service managers: `READY=1` on `$NOTIFY_SOCKET` (systemd `Type=notify`),
//! sent once the daemon is ready to serve. Nothing happens without the variable.

use std::os::unix::net::UnixDatagram;

/// Tell the service manager we are ready, if one asked (best effort).
pub fn ready() {
    send("READY=1");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        // abstract socket namespace
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not notify the service manager");
    }
}
