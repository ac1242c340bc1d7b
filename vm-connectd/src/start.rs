//! What `vm-connectd`'s `main` runs ([`main_exec`]): the daemon in host or guest mode, or the
//! `status` command; the binary only parses, calls and maps the result to its exit code
//! ([`MainError::exit_code`], the one mapping; the table is [`crate::cli::EXIT_STATUS`]).

use std::path::Path;
use std::time::Duration;

use vm_proto::client::{Client, ClientError};

use crate::cli::{Cli, Command, Mode, exit};

/// How long `status` waits for the daemon's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why vm-connectd ended with a failure.
#[derive(Debug, thiserror::Error)]
pub enum MainError {
    /// Neither host nor guest mode was asked for.
    #[error("give -t host or -t guest")]
    NoMode,
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// Host mode in a build without it (the static guest build).
    #[error("this build has no host mode (built without the libvirt feature, for guests)")]
    NoHostMode,
    /// The host relay failed.
    #[cfg(feature = "libvirt")]
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// The guest relay failed.
    #[error(transparent)]
    Guest(#[from] crate::guest::GuestError),
    /// `status`: the daemon's socket cannot be reached.
    #[error("status: cannot reach the daemon; is it running? (--socket names another socket)")]
    Unreachable(#[source] ClientError),
    /// `status`: the daemon gave no answer.
    #[error("status: no answer from the daemon")]
    Status(#[source] ClientError),
}

impl MainError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            MainError::NoMode => exit::USAGE,
            MainError::Unreachable(_) => exit::UNREACHABLE,
            MainError::Runtime(_) | MainError::NoHostMode | MainError::Guest(_) => exit::FAILURE,
            #[cfg(feature = "libvirt")]
            MainError::Host(_) => exit::FAILURE,
            MainError::Status(_) => exit::FAILURE,
        }
    }

    /// Whether the daemon ran (or tried to) and failed, so the failure belongs in its log too;
    /// the others concern only the person at the command line.
    pub fn is_daemon_failure(&self) -> bool {
        match self {
            MainError::Runtime(_) | MainError::Guest(_) => true,
            #[cfg(feature = "libvirt")]
            MainError::Host(_) => true,
            MainError::NoMode
            | MainError::NoHostMode
            | MainError::Unreachable(_)
            | MainError::Status(_) => false,
        }
    }
}

/// Runs what `cli` asks for: `status`, or the daemon until SIGTERM/SIGINT.
pub fn main_exec(cli: &Cli) -> Result<(), MainError> {
    if let Some(Command::Status { socket, json }) = &cli.command {
        let text = status(socket)?;
        if *json {
            println!("{text}");
        } else {
            print!("{}", crate::status::text(&text));
        }
        return Ok(());
    }
    let mode = cli.mode.ok_or(MainError::NoMode)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MainError::Runtime)?;
    runtime.block_on(async {
        match mode {
            Mode::Guest => {
                let cfg = crate::guest::GuestConfig {
                    port: cli
                        .port
                        .clone()
                        .map_or(crate::port::PortSpec::Auto, crate::port::PortSpec::Path),
                    socket: cli.socket.clone(),
                    request_timeout: cli
                        .request_timeout
                        .map_or(crate::limits::GUEST_REQUEST_TIMEOUT, Duration::from_secs),
                };
                Ok(crate::guest::run(cfg, crate::shutdown_signal()).await?)
            }
            Mode::Host => host(cli).await,
        }
    })
}

/// The running daemon's status report (JSON), through its local socket.
pub fn status(socket: &Path) -> Result<String, MainError> {
    let mut client =
        Client::connect(socket, vm_proto::Role::Client).map_err(MainError::Unreachable)?;
    client.status(STATUS_TIMEOUT).map_err(MainError::Status)
}

#[cfg(feature = "libvirt")]
async fn host(cli: &Cli) -> Result<(), MainError> {
    let node = cli.node.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let cfg = crate::host::HostConfig {
        sock_dir: cli.sock_dir.clone(),
        socket: cli.socket.clone(),
        libvirt_uri: (!cli.no_libvirt).then(|| cli.libvirt.clone()),
        node,
        request_timeout: cli
            .request_timeout
            .map_or(crate::limits::HOST_REQUEST_TIMEOUT, Duration::from_secs),
        qemu_pid_dir: cli.qemu_pid_dir.clone(),
        guests: cli.guests.clone(),
    };
    Ok(crate::host::run(cfg, crate::shutdown_signal()).await?)
}

#[cfg(not(feature = "libvirt"))]
async fn host(_cli: &Cli) -> Result<(), MainError> {
    Err(MainError::NoHostMode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_code_of_the_table() {
        let io = || std::io::Error::other("x");
        for (e, code) in [
            (MainError::NoMode, 2),
            (MainError::Runtime(io()), 1),
            (MainError::NoHostMode, 1),
            (
                MainError::Unreachable(ClientError::Io {
                    op: "x",
                    source: io(),
                }),
                5,
            ),
            (
                MainError::Status(ClientError::Io {
                    op: "x",
                    source: io(),
                }),
                1,
            ),
        ] {
            assert_eq!(e.exit_code(), code, "{e}");
            assert!(
                crate::cli::EXIT_STATUS.iter().any(|(c, _)| *c == code),
                "{code} is not in EXIT_STATUS"
            );
        }
    }

    #[test]
    fn status_of_no_daemon_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let e = status(&dir.path().join("none.sock")).unwrap_err();
        assert_eq!(e.exit_code(), exit::UNREACHABLE, "{e}");
    }
}
