//! `pmkt-bench-connectd`: load on a host-mode vm-connectd with simulated guests.
//!
//! ```text
//! pmkt-bench-connectd VM_CONNECTD_BINARY [GUESTS=500] [RATE=1000] [SECS=10] [IDLE_SECS=30]
//! ```
//! Creates GUESTS unix sockets where QEMU's would be (the test plays QEMU: it listens, the
//! daemon connects), starts `vm-connectd -t host --no-libvirt` on them, waits until it has
//! connected to every one. Every simulated guest then plays a guest daemon: it says Hello and
//! answers each Heartbeat with an Alive, on its own thread. First the guests only heartbeat for
//! IDLE_SECS (the daemon's default interval, 5 s): the daemon's RSS and CPU time then, and the
//! liveness it reports for the first and last guest. Then RATE pings per second spread over all
//! guests for SECS seconds: the daemon's RSS and the round-trip percentiles. Exits non-zero if
//! a ping went unanswered or a guest is not `answering`.

// A benchmark harness: a failed set-up step ends the run with its cause.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_proto::{Alive, Decoder, Hello, Kind, Message, Role};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bin) = args.first() else {
        eprintln!("usage: pmkt-bench-connectd VM_CONNECTD_BINARY [GUESTS] [RATE] [SECS]");
        std::process::exit(2);
    };
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (guests, rate, secs, idle) = (arg(1, 500) as usize, arg(2, 1000), arg(3, 10), arg(4, 30));
    let dir = tempfile::tempdir().expect("temp dir");
    let gdir = dir.path().join("guests");
    std::fs::create_dir_all(&gdir).expect("guest dir");
    let listeners: Vec<UnixListener> = (0..guests)
        .map(|i| UnixListener::bind(gdir.join(format!("g{i:04}"))).expect("bind"))
        .collect();
    let socket = dir.path().join("vmc.sock");
    let mut daemon = vm_tests::connectd::spawn_bench_relay(bin, &gdir, &socket);
    let t_connect = Instant::now();
    // accept every connection (the daemon found the sockets by its start-up scan)
    let streams: Vec<UnixStream> = listeners
        .iter()
        .map(|l| {
            let (s, _) = l.accept().expect("accept");
            s
        })
        .collect();
    let connected = t_connect.elapsed();
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let rtts: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let alives = Arc::new(AtomicU64::new(0));
    // one writer per guest, shared by its pings and its answers to heartbeats (whole frames)
    let mut writers: Vec<Arc<Mutex<UnixStream>>> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let mut reader = s.try_clone().expect("clone");
        let writer = Arc::new(Mutex::new(s.try_clone().expect("clone")));
        let hello = Message::Hello(Hello::current(Role::GuestDaemon, i as u64 + 1));
        writer
            .lock()
            .expect("lock")
            .write_all(&hello.to_frame(0).to_bytes())
            .expect("hello");
        writers.push(Arc::clone(&writer));
        let (sent, rtts, alives) = (Arc::clone(&sent), Arc::clone(&rtts), Arc::clone(&alives));
        std::thread::spawn(move || {
            let mut dec = Decoder::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                dec.feed(&buf[..n]);
                while let Some(Ok(frame)) = dec.next_frame() {
                    if frame.kind() == Kind::Heartbeat {
                        let alive = Message::Alive(Alive::default()).to_frame(frame.id());
                        let _ = writer.lock().expect("lock").write_all(&alive.to_bytes());
                        alives.fetch_add(1, Ordering::Relaxed);
                    } else if frame.kind() == Kind::Pong {
                        let now = Instant::now();
                        if let Some(t) = sent.lock().expect("lock").remove(&frame.id()) {
                            rtts.lock().expect("lock").push(now - t);
                        }
                    }
                }
            }
        });
    }
    // idle: the guests only answer heartbeats, from the first round on
    let t_first = Instant::now();
    while alives.load(Ordering::Relaxed) < guests as u64
        && t_first.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (cpu0, alive0, t_idle) = (
        cpu_ticks(daemon.id()),
        alives.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(idle));
    let idle_cpu = cpu_ticks(daemon.id()).saturating_sub(cpu0);
    let idle_alives = alives.load(Ordering::Relaxed) - alive0;
    let idle_wall = t_idle.elapsed();
    let rss_idle = rss_kib(daemon.id());
    let liveness: Vec<String> = [0, guests - 1]
        .iter()
        .map(|i| {
            let mut c = vm_proto::client::Client::connect(&socket, Role::Client).expect("connect");
            let json = c
                .status_of(&format!("g{i:04}"), Duration::from_secs(5))
                .expect("status");
            let v: serde_json::Value = serde_json::from_str(&json).expect("json");
            v["guests"][0]["liveness"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = i + 1;
        let w = &writers[(i as usize) % guests];
        sent.lock().expect("lock").insert(id, Instant::now());
        let _ = w
            .lock()
            .expect("lock")
            .write_all(&Message::Ping.to_frame(id).to_bytes());
    }
    let send_time = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sent.lock().expect("lock").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_load = rss_kib(daemon.id());
    let lost = sent.lock().expect("lock").len();
    let mut v = rtts.lock().expect("lock").clone();
    v.sort();
    let pct = |p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "vm-connectd host mode, {guests} simulated guests (unix sockets standing in for QEMU's)"
    );
    println!(
        "  all {guests} guests connected in {:.2} s",
        connected.as_secs_f64()
    );
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    println!(
        "  idle, every guest answering heartbeats (default interval 5 s): {idle_alives} heartbeats \
         answered in {:.0} s, daemon CPU {:.2}% of one core; liveness of the first and last \
         guest: {}",
        idle_wall.as_secs_f64(),
        idle_cpu as f64 / tick / idle_wall.as_secs_f64() * 100.0,
        liveness.join(", ")
    );
    println!(
        "  RSS: {:.1} MiB idle (heartbeating), {:.1} MiB under load",
        rss_idle as f64 / 1024.0,
        rss_load as f64 / 1024.0
    );
    println!(
        "  {} pings at {rate}/s over {:.1} s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, lost {lost}",
        v.len(),
        send_time.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    if lost > 0 || liveness.iter().any(|l| l != "answering") {
        std::process::exit(1);
    }
}

/// The process's user + system CPU time, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command (which may hold spaces) start after its closing parenthesis
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the command
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
