//! The guest tier: the TCG guest image, its domain XML, its serial console and its
//! `vmconnectd` channel.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vm_common::process::Cmd;

use crate::{run_ok, script, state_dir};

/// Marker the guest prints on its console once its shell is up.
pub const READY_MARKER: &str = "PMKT-GUEST-READY";

static IMAGE: OnceLock<PathBuf> = OnceLock::new();

/// Make sure the guest image is built from the current guest binaries (`guest-image.sh
/// --no-build`: tests run inside `cargo test`, which holds cargo's build lock, so the static
/// guest binaries must have been built before; tests/run-all does that). Returns its directory.
pub fn ensure_image() -> &'static Path {
    IMAGE.get_or_init(|| {
        run_ok(&script("guest-image.sh").arg("--no-build"));
        state_dir().join("guest")
    })
}

/// How the guest uses its `vmconnectd` port (kernel command line `pmkt.vport=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vport {
    /// The test bed's echo service (greeting, then `echo:<line>` for every line).
    Echo,
    /// The project's guest daemon, `vm-connectd -t guest`, started by the guest's init.
    Daemon,
    /// Left alone, for a guest-side daemon started by the test.
    None,
}

/// The domain XML of test guest `name`, with sockets under `rundir` and the console transcript
/// in `logdir` (paths as seen by the libvirtd that runs it).
pub fn domain_xml(name: &str, rundir: &Path, logdir: &Path, vport: Vport) -> String {
    domain_xml_with(name, rundir, logdir, vport, &[])
}

/// [`domain_xml`] with more of `domain-xml.sh`'s settings (`env`: e.g. `CMDLINE`).
pub fn domain_xml_with(
    name: &str,
    rundir: &Path,
    logdir: &Path,
    vport: Vport,
    env: &[(&str, &str)],
) -> String {
    ensure_image();
    let vport = match vport {
        Vport::Echo => "echo",
        Vport::Daemon => "daemon",
        Vport::None => "none",
    };
    let mut cmd = script("domain-xml.sh")
        .arg(name)
        .arg(rundir)
        .arg(logdir)
        .env("VPORT", vport);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    run_ok(&cmd).stdout_text()
}

/// The kernel command line of a test guest (`domain-xml.sh`'s default) whose kernel hangs on a
/// panic instead of rebooting: QEMU keeps running a dead guest, as after a real hang (the
/// default `panic=-1` reboots, which `on_reboot=destroy` turns into a stopped domain).
pub fn cmdline_hang_on_panic(name: &str, vport: Vport) -> String {
    let vport = match vport {
        Vport::Echo => "echo",
        Vport::Daemon => "daemon",
        Vport::None => "none",
    };
    format!("console=ttyS0 quiet panic=0 pmkt.name={name} pmkt.vport={vport}")
}

/// Wait until the console transcript `log` shows the guest's shell is up; panic with the
/// transcript on timeout or kernel panic.
pub fn wait_ready(log: &Path, timeout: Duration) {
    let started = Instant::now();
    loop {
        let text = std::fs::read(log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if text.contains(READY_MARKER) {
            return;
        }
        assert!(!text.contains("Kernel panic"), "guest panicked:\n{text}");
        assert!(
            started.elapsed() < timeout,
            "no {READY_MARKER} in {} after {timeout:?}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect_retry(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let started = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if started.elapsed() >= timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The guest's serial console (a shell), reached through QEMU's unix socket. Only one client
/// can be connected at a time.
#[derive(Debug)]
pub struct Console {
    stream: UnixStream,
    seq: u32,
}

/// What a command run on the console printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleOutput {
    /// stdout and stderr, `\r` removed.
    pub output: String,
    /// The command's exit status.
    pub status: i32,
}

impl Console {
    /// Connect to the console socket.
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = connect_retry(path, Duration::from_secs(10))?;
        Ok(Self { stream, seq: 0 })
    }

    /// Run `command` with the guest's `sh` and return its output. The command travels base64
    /// encoded, so quotes, newlines and here-documents need no escaping; the markers around the
    /// output are split in the typed line so the terminal's echo of it never matches.
    pub fn run(&mut self, command: &str, timeout: Duration) -> std::io::Result<ConsoleOutput> {
        self.seq += 1;
        let id = format!("{}-{}", std::process::id(), self.seq);
        let b64 = vm_seal::base64::encode(command.as_bytes());
        let line = format!(
            "echo PMKTB''EG-{id}; echo {b64} | base64 -d > /tmp/cmd-{id}; \
             sh /tmp/cmd-{id} </dev/null 2>&1; echo PMKTE''ND-{id} rc=$?\n"
        );
        self.stream.write_all(line.as_bytes())?;
        let begin = format!("PMKTBEG-{id}\n");
        let end = format!("PMKTEND-{id} rc=");
        let started = Instant::now();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        loop {
            let text = String::from_utf8_lossy(&buf).replace('\r', "");
            if let Some(b) = text.find(&begin) {
                let after = &text[b + begin.len()..];
                if let Some(e) = after.find(&end) {
                    let rest = &after[e + end.len()..];
                    if let Some(nl) = rest.find('\n') {
                        let status = rest[..nl].trim().parse().unwrap_or(-1);
                        return Ok(ConsoleOutput {
                            output: after[..e].to_owned(),
                            status,
                        });
                    }
                }
            }
            if started.elapsed() > timeout {
                // Interrupt the command so it does not eat the next one's input.
                let _ = self.stream.write_all(b"\x03\n");
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("console command timed out after {timeout:?}: {command}\n{text}"),
                ));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "console closed",
                    ));
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The host end of a guest's `vmconnectd` channel while the guest runs the test bed's echo
/// service (QEMU listens; we connect, like host-mode vm-connectd does).
#[derive(Debug)]
pub struct EchoPeer {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The guest's greeting (`hello-from-<name>`).
    pub greeting: String,
}

impl EchoPeer {
    /// Connect (retrying while QEMU has not created the socket yet) and read the greeting.
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Self> {
        let stream = connect_retry(path, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        reader.read_line(&mut greeting)?;
        if greeting.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "channel closed before the guest's greeting",
            ));
        }
        Ok(Self {
            reader,
            writer,
            greeting: greeting.trim_end().to_owned(),
        })
    }

    /// Send one line and return the guest's answer and the round-trip time.
    pub fn echo(&mut self, line: &str) -> std::io::Result<(String, Duration)> {
        let started = Instant::now();
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer)?;
        Ok((answer.trim_end().to_owned(), started.elapsed()))
    }
}

/// Command for the `pmkt-tb` helper (console and channel access from shell scripts and from
/// inside namespace nodes).
pub fn helper_cmd() -> Cmd {
    Cmd::new(crate::project_bin("pmkt-tb"))
}
