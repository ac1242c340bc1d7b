//! `vm-connectd`: the relay between guests and their host over the `vmconnectd` virtio-serial
//! channel. Thin binary: options, logging, runtime, then the library's host or guest mode.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vm_connectd::cli::{Cli, Command, Mode};

fn main() -> ExitCode {
    let cli = Cli::parse();
    vm_common::logging::init(cli.verbosity());
    if let Some(Command::Status { socket, json }) = &cli.command {
        return status(socket, *json);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vm-connectd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.mode {
            Some(Mode::Guest) => {
                let cfg = vm_connectd::guest::GuestConfig {
                    port: cli.port.clone().map_or(
                        vm_connectd::port::PortSpec::Auto,
                        vm_connectd::port::PortSpec::Path,
                    ),
                    socket: cli.socket.clone(),
                    request_timeout: cli.request_timeout.map_or(
                        vm_connectd::limits::GUEST_REQUEST_TIMEOUT,
                        Duration::from_secs,
                    ),
                };
                vm_connectd::guest::run(cfg, vm_connectd::shutdown_signal())
                    .await
                    .map_err(|e| vm_common::error_chain(&e))
            }
            Some(Mode::Host) => host(&cli).await,
            None => Err("give -t host or -t guest".to_owned()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vm-connectd: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "libvirt")]
async fn host(cli: &Cli) -> Result<(), String> {
    let node = cli.node.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let cfg = vm_connectd::host::HostConfig {
        sock_dir: cli.sock_dir.clone(),
        socket: cli.socket.clone(),
        libvirt_uri: (!cli.no_libvirt).then(|| cli.libvirt.clone()),
        node,
        request_timeout: cli.request_timeout.map_or(
            vm_connectd::limits::HOST_REQUEST_TIMEOUT,
            Duration::from_secs,
        ),
        qemu_pid_dir: cli.qemu_pid_dir.clone(),
        guests: cli.guests.clone(),
    };
    vm_connectd::host::run(cfg, vm_connectd::shutdown_signal())
        .await
        .map_err(|e| vm_common::error_chain(&e))
}

#[cfg(not(feature = "libvirt"))]
async fn host(_cli: &Cli) -> Result<(), String> {
    Err("this build has no host mode (built without the libvirt feature, for guests)".to_owned())
}

fn status(socket: &std::path::Path, json: bool) -> ExitCode {
    let mut client = match vm_proto::client::Client::connect(socket, vm_proto::Role::Client) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "vm-connectd status: cannot reach the daemon: {}; is it running? (--socket names \
                 another socket)",
                vm_common::error_chain(&e)
            );
            return ExitCode::from(vm_connectd::cli::exit::UNREACHABLE);
        }
    };
    match client.status(Duration::from_secs(5)) {
        Ok(text) if json => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(text) => {
            print!("{}", vm_connectd::status_text(&text));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vm-connectd status: {}", vm_common::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
