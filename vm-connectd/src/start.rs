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
    /// `status`, `expose`: the daemon's socket cannot be reached.
    #[error("cannot reach the daemon; is it running? (--socket names another socket)")]
    Unreachable(#[source] ClientError),
    /// `status`: the daemon gave no answer.
    #[error("status: no answer from the daemon")]
    Status(#[source] ClientError),
    /// `expose`: the daemon refused or did not answer.
    #[error("expose {domain} {port}: the daemon did not make the change")]
    Expose {
        /// The guest.
        domain: String,
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// A health check named on the command line cannot be used.
    #[error(transparent)]
    Health(crate::health::CheckError),
    /// `status --guest`: the daemon has no link to that guest.
    #[error(
        "status: this host's vm-connectd has no link to guest {0:?} (it does not run here, or \
         its channel socket was not found)"
    )]
    NotLinked(String),
    /// `status --guest`: the answer is not a host daemon's status with liveness.
    #[error(
        "status: the daemon's answer has no liveness for guest {0:?} (a guest daemon, or another version)"
    )]
    NoLiveness(String),
    /// `status`: a host daemon's pages of its status do not read as one (docs/protocol.md
    /// §15.5).
    #[error("status: the daemon's status pages are inconsistent: {0}")]
    StatusPages(String),
}

impl MainError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            MainError::NoMode | MainError::Health(_) => exit::USAGE,
            MainError::Unreachable(_) => exit::UNREACHABLE,
            MainError::Runtime(_) | MainError::NoHostMode | MainError::Guest(_) => exit::FAILURE,
            #[cfg(feature = "libvirt")]
            MainError::Host(_) => exit::FAILURE,
            MainError::Status(_)
            | MainError::NoLiveness(_)
            | MainError::StatusPages(_)
            | MainError::Expose { .. } => exit::FAILURE,
            MainError::NotLinked(_) => exit::NOT_LINKED,
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
            | MainError::Health(_)
            | MainError::NoHostMode
            | MainError::Unreachable(_)
            | MainError::Status(_)
            | MainError::Expose { .. }
            | MainError::NotLinked(_)
            | MainError::NoLiveness(_)
            | MainError::StatusPages(_) => false,
        }
    }
}

/// Runs what `cli` asks for: `status`, or the daemon until SIGTERM/SIGINT.
pub fn main_exec(cli: &Cli) -> Result<(), MainError> {
    if let Some(Command::Status {
        socket,
        json,
        guest,
    }) = &cli.command
    {
        if let Some(domain) = guest {
            print!("{}", guest_liveness(&status_of(socket, domain)?, domain)?);
            return Ok(());
        }
        let text = status(socket)?;
        if *json {
            println!("{text}");
        } else {
            print!("{}", crate::status::text(&text));
        }
        return Ok(());
    }
    if let Some(Command::Expose {
        socket,
        domain,
        port,
    }) = &cli.command
    {
        return expose(socket, domain, *port);
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
                    health: crate::health::checks(&cli.health_units, &cli.health_commands)
                        .map_err(MainError::Health)?,
                    health_interval: cli.health_interval.max(Duration::from_millis(100)),
                    health_failures: cli.health_failures,
                    stream_target: (!cli.no_streams).then_some(cli.stream_target),
                    pacemaker_authkey: cli.pacemaker_authkey.clone(),
                };
                Ok(crate::guest::run(cfg, crate::shutdown_signal()).await?)
            }
            Mode::Host => host(cli).await,
        }
    })
}

/// `expose DOMAIN PORT`: asks the host daemon to offer (or withdraw) a guest's stream.
pub fn expose(socket: &Path, domain: &str, port: u16) -> Result<(), MainError> {
    let mut client = vm_proto::client::Client::connect(socket, vm_proto::Role::Client)
        .map_err(MainError::Unreachable)?;
    client
        .expose(domain, port, STATUS_TIMEOUT)
        .map_err(|source| MainError::Expose {
            domain: domain.to_owned(),
            port,
            source,
        })
}

/// `status --guest DOMAIN`'s output from a host daemon's status JSON: the liveness value as
/// published, and a `failing:` line when health checks fail.
pub fn guest_liveness(json: &str, domain: &str) -> Result<String, MainError> {
    let no_liveness = || MainError::NoLiveness(domain.to_owned());
    let Ok(crate::status::Status::Host(host)) = serde_json::from_str(json) else {
        return Err(no_liveness());
    };
    let link = host
        .guests
        .iter()
        .find(|g| g.domain == domain)
        .ok_or_else(|| MainError::NotLinked(domain.to_owned()))?;
    let value = link.published().ok_or_else(no_liveness)?;
    let mut out = format!("{value}\n");
    if !link.failing.is_empty() {
        out.push_str(&format!("failing: {}\n", link.failing.join(",")));
    }
    Ok(out)
}

/// The running host daemon's status of guest `domain` only (JSON).
pub fn status_of(socket: &Path, domain: &str) -> Result<String, MainError> {
    let mut client =
        Client::connect(socket, vm_proto::Role::Client).map_err(MainError::Unreachable)?;
    client
        .status_of(domain, STATUS_TIMEOUT)
        .map_err(MainError::Status)
}

/// The running daemon's status report (JSON), through its local socket: a host daemon's
/// read one page at a time (`StatusPage`, docs/protocol.md §15.5) and put together, so it is
/// whole however many guests the host runs; a daemon without pages (an earlier release)
/// answers the page request Unsupported and is asked for its whole status.
pub fn status(socket: &Path) -> Result<String, MainError> {
    let mut client =
        Client::connect(socket, vm_proto::Role::Client).map_err(MainError::Unreachable)?;
    let mut whole: Option<crate::status::HostStatus> = None;
    let mut after = String::new();
    loop {
        let json = match client.status_page(&after, STATUS_TIMEOUT) {
            Err(ClientError::Remote {
                code: vm_proto::ErrorCode::Unsupported,
                ..
            }) if whole.is_none() => {
                return client.status(STATUS_TIMEOUT).map_err(MainError::Status);
            }
            other => other.map_err(MainError::Status)?,
        };
        let mut page = match serde_json::from_str(&json) {
            Ok(crate::status::Status::Host(page)) => page,
            // a guest daemon's (one page), or not a status: shown as it is
            _ if whole.is_none() => return Ok(json),
            _ => {
                return Err(MainError::StatusPages(format!(
                    "a page after {after} is not a host status"
                )));
            }
        };
        let next = page.next.take();
        match &mut whole {
            None => whole = Some(page),
            Some(w) => w.guests.append(&mut page.guests),
        }
        match next {
            // (each page must start after the last: a daemon cannot keep the reader going)
            Some(n) if n > after => after = n,
            Some(n) => {
                return Err(MainError::StatusPages(format!(
                    "the page after {after:?} says the next starts after {n:?}"
                )));
            }
            None => break,
        }
    }
    Ok(whole.map_or_else(String::new, |w| crate::status::Status::Host(w).to_json()))
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
        heartbeat: (!cli.heartbeat_interval.is_zero()).then_some(crate::liveness::Heartbeat {
            interval: cli.heartbeat_interval,
            timeout: cli.liveness_timeout,
        }),
        publish: !cli.no_attributes,
        expose: cli.expose.clone(),
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
            (MainError::NotLinked("g".into()), 4),
            (
                MainError::Health(crate::health::CheckError::Duplicate("x".into())),
                2,
            ),
            (MainError::NoLiveness("g".into()), 1),
        ] {
            assert_eq!(e.exit_code(), code, "{e}");
            assert!(
                crate::cli::EXIT_STATUS.iter().any(|(c, _)| *c == code),
                "{code} is not in EXIT_STATUS"
            );
        }
    }

    #[test]
    fn status_guest_prints_the_published_value() {
        let json = r#"{"mode":"host","node":"n1","socket_dir":"/d","modules":[],"pending":0,
            "guests":[{"domain":"g1","uuid":"","identity":"libvirt","socket":"/d/g1","state":"up",
            "since":1,"last_rx":null,"last_tx":null,"guest_software":"","inflight":0,"requests":0,
            "dropped":0,"offences":0,"backoffs":0,"backoff_until":null,"rate_waits":0,
            "received":0,"checksummed":0,"liveness":"unhealthy","liveness_since":7,
            "last_alive":9,"failing":["db.service","x"]}]}"#;
        assert_eq!(
            guest_liveness(json, "g1").unwrap(),
            "up:unhealthy:7\nfailing: db.service,x\n"
        );
        assert_eq!(guest_liveness(json, "g2").unwrap_err().exit_code(), 4);
        let guest = r#"{"mode":"guest","port":"p","host_connected":true,"host_session":null,
            "host_software":"","since":null,"clients":0,"pending":0,"host_changes":0,
            "answered":0,"offences":0,"request_timeout_secs":65}"#;
        assert_eq!(guest_liveness(guest, "g1").unwrap_err().exit_code(), 1);
    }

    #[test]
    fn status_of_no_daemon_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let e = status(&dir.path().join("none.sock")).unwrap_err();
        assert_eq!(e.exit_code(), exit::UNREACHABLE, "{e}");
    }
}
