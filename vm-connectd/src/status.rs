//! The report of `vm-connectd status`: one type, which the daemon serialises as JSON (what
//! `status --json` prints, and what tests and tools read) and the command reads back to print
//! it as text ([`text`]). `mode` says which daemon answered.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A daemon's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Status {
    /// A host daemon's.
    Host(HostStatus),
    /// A guest daemon's.
    Guest(GuestStatus),
}

/// The host daemon: its guests' links and the modules registered with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// The host node's name.
    pub node: String,
    /// Where the guests' channel sockets are.
    pub socket_dir: String,
    /// One entry per guest link, by domain name.
    pub guests: Vec<LinkStatus>,
    /// The registered modules, by service.
    pub modules: Vec<ModuleStatus>,
    /// Requests waiting for a module's answer.
    pub pending: usize,
    /// Guests whose stream is offered on a loopback port.
    #[serde(default)]
    pub exposed: Vec<Exposed>,
    /// In one page of a status (`StatusPage`, docs/protocol.md §15.5): the last domain this
    /// page has, to ask for the next page after; absent on the last page and in a whole status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A guest's stream offered on `127.0.0.1:port` (docs/protocol.md §16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposed {
    /// The guest.
    pub domain: String,
    /// The loopback port.
    pub port: u16,
}

/// Room a page keeps for its `next` field: `,"next":` and the domain name as a JSON string
/// (at most [`vm_proto::message::MAX_DOMAIN_LEN`] bytes, each escaped to at most 6).
const NEXT_ROOM: usize = 8 + 2 + 6 * vm_proto::message::MAX_DOMAIN_LEN;

/// A page cannot hold the links of one domain (more links of one name than one page holds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the links of guest {domain} alone do not fit one status page of {max} bytes")]
pub struct PageOverflow {
    /// The domain.
    pub domain: String,
    /// The page's limit.
    pub max: usize,
}

/// One page of a host daemon's status, as JSON of at most `max` bytes: `head` (node, modules,
/// pending; its guests are ignored) with the first of `links` (sorted by domain, those after
/// the page's cursor) that fit, whole domains only, and `next` when links are left over. The
/// links are taken one at a time, so the caller can build them lazily: what a page costs is
/// the page, whatever the number of guests.
pub fn page(
    mut head: HostStatus,
    links: impl IntoIterator<Item = LinkStatus>,
    max: usize,
) -> Result<String, PageOverflow> {
    head.guests = Vec::new();
    head.next = None;
    let base = Status::Host(head.clone()).to_json().len();
    let budget = max.saturating_sub(base + NEXT_ROOM);
    let mut used: usize = 0;
    // where the last domain's links start in `head.guests`
    let mut group = 0;
    for link in links {
        // its JSON and the comma before it
        let len = serde_json::to_string(&link).map_or(usize::MAX, |j| j.len().saturating_add(1));
        if used.saturating_add(len) > budget {
            // the page ends before this link's domain: its links already taken go to the next
            if head.guests.last().is_some_and(|l| l.domain == link.domain) {
                head.guests.truncate(group);
            }
            let Some(last) = head.guests.last() else {
                return Err(PageOverflow {
                    domain: link.domain,
                    max,
                });
            };
            head.next = Some(last.domain.clone());
            break;
        }
        if head.guests.last().is_none_or(|l| l.domain != link.domain) {
            group = head.guests.len();
        }
        used += len;
        head.guests.push(link);
    }
    Ok(Status::Host(head).to_json())
}

/// The state of a guest link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Waiting for the guest's Hello.
    Connecting,
    /// Relaying.
    Up,
    /// Past its violation budget: not read until `backoff_until` (docs/protocol.md §4).
    Backoff,
}

impl LinkState {
    /// The word the JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Up => "up",
            LinkState::Backoff => "backoff",
        }
    }
}

/// One guest link of the host daemon. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The guest's libvirt domain name.
    pub domain: String,
    /// Its UUID.
    pub uuid: String,
    /// Where its identity comes from (`configured`, `libvirt`, `socket-name`).
    pub identity: String,
    /// Its channel socket.
    pub socket: String,
    /// The link's state.
    pub state: LinkState,
    /// Since when the link is in that state.
    pub since: u64,
    /// The last frame received.
    pub last_rx: Option<u64>,
    /// The last frame sent.
    pub last_tx: Option<u64>,
    /// What the guest daemon says it is.
    pub guest_software: String,
    /// Requests of the guest in flight.
    pub inflight: usize,
    /// Requests relayed.
    pub requests: u64,
    /// Requests dropped.
    pub dropped: u64,
    /// Protocol violations.
    pub offences: u64,
    /// Times the link was backed off.
    pub backoffs: u64,
    /// Until when it is backed off.
    pub backoff_until: Option<u64>,
    /// Times a request waited for the rate limit.
    pub rate_waits: u64,
    /// Bytes received.
    pub received: u64,
    /// Frames whose checksum was verified.
    pub checksummed: u64,
    /// The guest daemon's liveness (`answering`, `silent`, `unknown`, `unhealthy`;
    /// `vm_proto::liveness`), as published.
    #[serde(default = "unknown")]
    pub liveness: String,
    /// Since when `liveness` (or the link's up/down) is what it is.
    #[serde(default)]
    pub liveness_since: Option<u64>,
    /// When the guest daemon last answered a heartbeat.
    #[serde(default)]
    pub last_alive: Option<u64>,
    /// The guest's failing health checks, as its last answer listed them.
    #[serde(default)]
    pub failing: Vec<String>,
    /// Streams open on the link now, and opened since it came up.
    #[serde(default)]
    pub streams: usize,
    /// (see `streams`)
    #[serde(default)]
    pub streams_opened: u64,
}

fn unknown() -> String {
    "unknown".to_owned()
}

impl LinkStatus {
    /// The guest's liveness as the published attribute's value (`<link>:<liveness>:<since>`),
    /// `None` if this status does not have it (a daemon of another version).
    pub fn published(&self) -> Option<vm_proto::liveness::GuestLiveness> {
        let link = match self.state {
            LinkState::Connecting => vm_proto::liveness::Link::Down,
            LinkState::Up | LinkState::Backoff => vm_proto::liveness::Link::Up,
        };
        Some(vm_proto::liveness::GuestLiveness {
            link,
            liveness: self.liveness.parse().ok()?,
            since: self.liveness_since?,
        })
    }
}

/// A module registered with the host daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleStatus {
    /// Its service name.
    pub service: String,
    /// Its process.
    pub pid: i32,
    /// Since when it is registered (Unix seconds).
    pub since: u64,
}

/// The guest daemon: its link to the host and its local clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStatus {
    /// The virtio-serial port.
    pub port: String,
    /// Whether a host daemon answers on it.
    pub host_connected: bool,
    /// The host daemon's session (16 hex digits), once known.
    pub host_session: Option<String>,
    /// What the host daemon says it is.
    pub host_software: String,
    /// Since when the host is connected (Unix seconds).
    pub since: Option<u64>,
    /// Local clients connected.
    pub clients: usize,
    /// Requests waiting for the host's answer.
    pub pending: usize,
    /// Times the host side changed (restart, migration).
    pub host_changes: u64,
    /// Requests answered.
    pub answered: u64,
    /// Protocol violations by the host side.
    pub offences: u64,
    /// The guest daemon's request timeout, seconds.
    pub request_timeout_secs: u64,
    /// Heartbeats of the host answered.
    #[serde(default)]
    pub heartbeats: u64,
    /// The health checks failing now (reported to the host).
    #[serde(default)]
    pub failing: Vec<String>,
    /// Streams the host has open to this guest now, and opened since the daemon started.
    #[serde(default)]
    pub streams: usize,
    /// (see `streams`)
    #[serde(default)]
    pub streams_opened: u64,
}

impl Status {
    /// The JSON `vm-connectd status --json` prints.
    pub fn to_json(&self) -> String {
        // (serialising these plain types cannot fail; should it, the reply says so)
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise the status: {e}\"}}"))
    }
}

/// A human-readable rendering of a daemon's status JSON (the JSON itself when it is not a
/// status, e.g. from another version).
pub fn text(json: &str) -> String {
    match serde_json::from_str::<Status>(json) {
        Ok(status) => render(&status, now()),
        Err(_) => format!("{json}\n"),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn render(status: &Status, now: u64) -> String {
    let mut out = String::new();
    match status {
        Status::Host(h) => {
            let _ = writeln!(
                out,
                "host {} (guest sockets in {}), {} request(s) pending",
                h.node, h.socket_dir, h.pending
            );
            let _ = writeln!(out, "modules:");
            for m in &h.modules {
                let _ = writeln!(out, "  {:<12} pid {}", m.service, m.pid);
            }
            let _ = writeln!(
                out,
                "{:<20} {:<11} {:<10} {:<16} {:>8} {:>8} {:>6} {:>6}  SOCKET",
                "GUEST", "IDENTITY", "LINK", "LIVENESS(age)", "RX(age)", "TX(age)", "REQS", "BAD"
            );
            let age = |t: Option<u64>| {
                t.map_or("-".to_owned(), |t| format!("{}s", now.saturating_sub(t)))
            };
            for g in &h.guests {
                let liveness = format!("{}({})", g.liveness, age(g.liveness_since));
                let _ = writeln!(
                    out,
                    "{:<20} {:<11} {:<10} {:<16} {:>8} {:>8} {:>6} {:>6}  {}",
                    g.domain,
                    g.identity,
                    g.state.as_str(),
                    liveness,
                    age(g.last_rx),
                    age(g.last_tx),
                    g.requests,
                    g.offences,
                    g.socket
                );
                if !g.failing.is_empty() {
                    let _ = writeln!(out, "  {} failing: {}", g.domain, g.failing.join(", "));
                }
            }
        }
        Status::Guest(g) => {
            let _ = writeln!(
                out,
                "guest port {}: host {}connected ({}), {} client(s), {} pending, {} host change(s), {} heartbeat(s) answered",
                g.port,
                if g.host_connected { "" } else { "NOT " },
                g.host_software,
                g.clients,
                g.pending,
                g.host_changes,
                g.heartbeats
            );
            if !g.failing.is_empty() {
                let _ = writeln!(out, "failing health checks: {}", g.failing.join(", "));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Status {
        Status::Host(HostStatus {
            node: "n1".into(),
            socket_dir: "/run/g".into(),
            guests: vec![LinkStatus {
                domain: "g1".into(),
                uuid: "u".into(),
                identity: "libvirt".into(),
                socket: "/run/g/g1.sock".into(),
                state: LinkState::Up,
                since: 90,
                last_rx: Some(95),
                last_tx: None,
                guest_software: "vm-connectd 0.1.0".into(),
                inflight: 0,
                requests: 3,
                dropped: 0,
                offences: 1,
                backoffs: 0,
                backoff_until: None,
                rate_waits: 0,
                received: 10,
                checksummed: 2,
                liveness: "answering".into(),
                liveness_since: Some(80),
                last_alive: Some(95),
                failing: vec![],
                streams: 1,
                streams_opened: 2,
            }],
            modules: vec![ModuleStatus {
                service: "stonith".into(),
                pid: 42,
                since: 1,
            }],
            pending: 0,
            next: None,
            exposed: vec![],
        })
    }

    fn link(domain: &str) -> LinkStatus {
        let Status::Host(h) = host() else {
            unreachable!()
        };
        let mut l = h.guests[0].clone();
        l.domain = domain.to_owned();
        l.socket = format!("/run/g/{domain}.sock");
        l
    }

    /// A host's status without guests (what a page is made from).
    fn head() -> HostStatus {
        let Status::Host(mut h) = host() else {
            unreachable!()
        };
        h.guests.clear();
        h
    }

    /// Pages of `links` (sorted) read as a client reads them: each after the last's `next`.
    fn read_pages(links: &[LinkStatus], max: usize) -> Vec<HostStatus> {
        let mut after = String::new();
        let mut pages = Vec::new();
        loop {
            let rest = links.iter().filter(|l| l.domain > after).cloned();
            let json = page(head(), rest, max).unwrap();
            assert!(json.len() <= max, "a page of {} bytes", json.len());
            let Status::Host(p) = serde_json::from_str(&json).unwrap() else {
                unreachable!()
            };
            let next = p.next.clone();
            pages.push(p);
            match next {
                Some(n) => {
                    assert!(n > after, "no progress after {after}");
                    after = n;
                }
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_hold_every_guest_once_within_the_limit() {
        let links: Vec<LinkStatus> = (0..500).map(|i| link(&format!("g{i:04}"))).collect();
        // one whole status of them does not fit one reply
        let whole = Status::Host(HostStatus {
            guests: links.clone(),
            ..head()
        });
        // (about 600 bytes a guest: some hundred guests fill a reply)
        assert!(whole.to_json().len() > vm_proto::MAX_BODY);
        let pages = read_pages(&links, vm_proto::MAX_BODY);
        assert!(pages.len() > 1, "{} page(s)", pages.len());
        let seen: Vec<&str> = pages
            .iter()
            .flat_map(|p| p.guests.iter().map(|g| g.domain.as_str()))
            .collect();
        let want: Vec<&str> = links.iter().map(|l| l.domain.as_str()).collect();
        assert_eq!(seen, want);
        // every page has the head and the last one has no next
        assert!(pages.iter().all(|p| p.node == "n1" && p.modules.len() == 1));
        assert_eq!(pages.last().unwrap().next, None);
        // few guests: one page, without next (as a whole status reads)
        let one = read_pages(&links[..3], vm_proto::MAX_BODY);
        assert_eq!((one.len(), one[0].guests.len()), (1, 3));
        assert!(
            !page(head(), links[..3].to_vec(), vm_proto::MAX_BODY)
                .unwrap()
                .contains("\"next\"")
        );
    }

    #[test]
    fn a_domain_with_several_links_is_never_split_between_pages() {
        // small pages: room for about three links; b has two links
        let one = serde_json::to_string(&link("a")).unwrap().len();
        let base = Status::Host(head()).to_json().len();
        let max = base + NEXT_ROOM + 3 * (one + 1) + 10;
        let links = vec![link("a"), link("a2"), link("b"), link("b"), link("c")];
        let pages = read_pages(&links, max);
        let names: Vec<Vec<&str>> = pages
            .iter()
            .map(|p| p.guests.iter().map(|g| g.domain.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["a", "a2"], vec!["b", "b", "c"]]);
        // a domain with more links than a page holds cannot be paged
        let many = vec![link("x"), link("x"), link("x"), link("x")];
        assert_eq!(
            page(head(), many, max),
            Err(PageOverflow {
                domain: "x".into(),
                max
            })
        );
    }

    #[test]
    fn guests_that_come_and_go_between_pages_shift_nothing() {
        let one = serde_json::to_string(&link("a")).unwrap().len();
        let base = Status::Host(head()).to_json().len();
        let max = base + NEXT_ROOM + 2 * (one + 1) + 10;
        let mut links = vec![link("a"), link("b"), link("c"), link("d")];
        let first = page(head(), links.clone(), max).unwrap();
        let Status::Host(first) = serde_json::from_str(&first).unwrap() else {
            unreachable!()
        };
        assert_eq!(first.next.as_deref(), Some("b"));
        // a goes, a0 comes (both before the cursor), bb comes after it
        links.retain(|l| l.domain != "a");
        links.push(link("a0"));
        links.push(link("bb"));
        links.sort_by(|x, y| x.domain.cmp(&y.domain));
        let rest = links.iter().filter(|l| l.domain.as_str() > "b").cloned();
        let Status::Host(second) = serde_json::from_str(&page(head(), rest, max).unwrap()).unwrap()
        else {
            unreachable!()
        };
        let names: Vec<&str> = second.guests.iter().map(|g| g.domain.as_str()).collect();
        assert_eq!(names, ["bb", "c"]);
    }

    #[test]
    fn the_json_says_its_mode_and_reads_back() {
        let json = host().to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["mode"], "host");
        assert_eq!(v["guests"][0]["state"], "up");
        assert_eq!(v["guests"][0]["last_tx"], serde_json::Value::Null);
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), host());
        let guest = Status::Guest(GuestStatus {
            port: "/dev/vport0p1".into(),
            host_connected: false,
            host_session: None,
            host_software: String::new(),
            since: None,
            clients: 2,
            pending: 1,
            host_changes: 4,
            answered: 7,
            offences: 0,
            request_timeout_secs: 65,
            streams: 0,
            streams_opened: 0,
            heartbeats: 3,
            failing: vec![],
        });
        let json = guest.to_json();
        assert!(json.starts_with("{\"mode\":\"guest\""), "{json}");
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), guest);
        assert_eq!(
            render(&guest, 0),
            "guest port /dev/vport0p1: host NOT connected (), 2 client(s), 1 pending, 4 host change(s), 3 heartbeat(s) answered\n"
        );
    }

    #[test]
    fn a_link_status_gives_the_published_value() {
        let Status::Host(h) = host() else {
            unreachable!()
        };
        let mut g = h.guests[0].clone();
        assert_eq!(g.published().unwrap().to_string(), "up:answering:80");
        g.state = LinkState::Connecting;
        g.liveness = "unknown".into();
        assert_eq!(g.published().unwrap().to_string(), "down:unknown:80");
        // a status from a daemon without liveness still reads, without a value
        let mut v: serde_json::Value = serde_json::from_str(&Status::Host(h).to_json()).unwrap();
        for k in ["liveness", "liveness_since", "last_alive", "failing"] {
            v["guests"][0].as_object_mut().unwrap().remove(k);
        }
        let Status::Host(old) = serde_json::from_value::<Status>(v).unwrap() else {
            unreachable!()
        };
        assert_eq!(old.guests[0].liveness, "unknown");
        assert_eq!(old.guests[0].published(), None);
    }

    #[test]
    fn text_lists_modules_and_guests_with_ages() {
        let t = render(&host(), 100);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "host n1 (guest sockets in /run/g), 0 request(s) pending"
        );
        assert_eq!(lines[2], "  stonith      pid 42");
        assert!(lines[3].starts_with("GUEST"), "{t}");
        let row: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "g1",
                "libvirt",
                "up",
                "answering(20s)",
                "5s",
                "-",
                "3",
                "1",
                "/run/g/g1.sock"
            ]
        );
        let Status::Host(mut h) = host() else {
            unreachable!()
        };
        h.guests[0].liveness = "unhealthy".into();
        h.guests[0].failing = vec!["db.service".into(), "web.service".into()];
        let t = render(&Status::Host(h), 100);
        assert!(
            t.contains("\n  g1 failing: db.service, web.service\n"),
            "{t}"
        );
        // not a status: shown as it is
        assert_eq!(text("{\"x\":1}"), "{\"x\":1}\n");
    }
}
