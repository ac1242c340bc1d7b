//! `-o metadata` (the fence-agents XML that Pacemaker and pcs read) and `--help`, both made
//! from [`PARAMS`].

use std::fmt::Write as _;

use crate::options::{AgentAction, PARAMS, Param, Setting};

/// The agent's name.
pub const AGENT: &str = "fence_vmstonith";

const SHORTDESC: &str = "Fence agent for KVM guests in a Pacemaker host cluster";

const LONGDESC: &str = "fence_vmstonith fences a guest of a guest cluster by asking the host \
cluster, which runs the guests as VirtualDomain resources. The request is sealed (AES-256-GCM) \
under the guest cluster's key and goes through this guest's vm-connectd and its virtio-serial \
channel to vm-stonithd on the host, which acts through the host cluster and answers only once \
the host cluster confirms the result; the answer is sealed too and bound to the request. The \
agent accepts options on the command line and, when it has no arguments, as name=value lines on \
stdin, as Pacemaker's fencer passes them.";

/// Text for XML content or a double-quoted attribute value.
fn xml(s: &str) -> String {
    vm_common::xml::escape(s, true)
}

/// The option as fence-agents show it: `-o, --action=[action]`, `--key-file=[path]`, `-v,
/// --verbose`. The deprecated `port` shows `plug`'s spelling, as in fence-agents.
fn getopt(p: &Param) -> String {
    let long = p.long.or(if p.deprecated { Some("plug") } else { None });
    let mut s = String::new();
    if let Some(c) = p.short {
        let _ = write!(s, "-{c}");
    }
    if let Some(long) = long {
        if !s.is_empty() {
            s.push_str(", ");
        }
        let _ = write!(s, "--{long}");
        if let Some(v) = p.value {
            let _ = write!(s, "=[{v}]");
        }
    } else if let Some(v) = p.value {
        let _ = write!(s, " [{v}]");
    }
    s
}

/// The metadata XML.
pub fn metadata() -> String {
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version=\"1.0\" ?>");
    let _ = writeln!(
        x,
        "<resource-agent name=\"{AGENT}\" shortdesc=\"{}\" >",
        xml(SHORTDESC)
    );
    let _ = writeln!(x, "<longdesc>{}</longdesc>", xml(LONGDESC));
    let _ = writeln!(
        x,
        "<vendor-url>{}</vendor-url>",
        xml(env!("CARGO_PKG_REPOSITORY"))
    );
    let _ = writeln!(x, "<parameters>");
    for p in PARAMS.iter().filter(|p| p.documented) {
        let mut attrs = format!("name=\"{}\" unique=\"0\" required=\"0\"", xml(p.name));
        if p.deprecated {
            attrs.push_str(" deprecated=\"1\"");
        }
        if let Some(o) = p.obsoletes {
            let _ = write!(attrs, " obsoletes=\"{}\"", xml(o));
        }
        let _ = writeln!(x, "\t<parameter {attrs}>");
        let _ = writeln!(x, "\t\t<getopt mixed=\"{}\" />", xml(&getopt(p)));
        match p.default {
            Some(d) => {
                let _ = writeln!(
                    x,
                    "\t\t<content type=\"{}\" default=\"{}\" />",
                    xml(p.content),
                    xml(d)
                );
            }
            None => {
                let _ = writeln!(x, "\t\t<content type=\"{}\" />", xml(p.content));
            }
        }
        let _ = writeln!(x, "\t\t<shortdesc lang=\"en\">{}</shortdesc>", xml(p.desc));
        let _ = writeln!(x, "\t</parameter>");
    }
    let _ = writeln!(x, "</parameters>");
    let _ = writeln!(x, "<actions>");
    for a in AgentAction::ALL {
        if a == AgentAction::On {
            // Pacemaker must not "unfence" (power on) guests by itself
            let _ = writeln!(x, "\t<action name=\"on\" automatic=\"0\"/>");
        } else {
            let _ = writeln!(x, "\t<action name=\"{}\" />", a.as_str());
        }
    }
    let _ = writeln!(x, "</actions>");
    let _ = writeln!(x, "</resource-agent>");
    x
}

/// The `--help` text.
pub fn usage() -> String {
    let mut u = format!(
        "{SHORTDESC}.\n\nUsage:\n  {AGENT} [OPTIONS]\n  {AGENT} < name=value lines (when \
         there are no arguments)\n\nOptions:\n"
    );
    for p in PARAMS
        .iter()
        .filter(|p| p.documented && p.long.is_some() && !p.deprecated)
    {
        let mut spelled = getopt(p);
        if let Some(d) = p.default {
            let _ = write!(spelled, " (default {d})");
        }
        let mut names = p.name.to_owned();
        for alias in PARAMS
            .iter()
            .filter(|a| a.deprecated && a.setting == p.setting)
        {
            let _ = write!(names, " or {}", alias.name);
        }
        let _ = writeln!(u, "  {spelled}\n        {}; stdin: {names}", p.desc);
    }
    // the ignored names, wrapped like the rest of the text
    let mut ignored = String::new();
    let mut width = 0;
    for word in ignored_text().split(' ') {
        if width > 0 && width + 1 + word.len() > 92 {
            ignored.push('\n');
            width = 0;
        } else if width > 0 {
            ignored.push(' ');
            width += 1;
        }
        ignored.push_str(word);
        width += word.len();
    }
    let _ = write!(
        u,
        "\nActions: on, off, reboot (alias reset), status, list, list-status, monitor, metadata,\n\
         validate-all.\n\n{ignored}\n\nExit status: 0 success (status: on); 1 failure or bad usage; \
         2 status: off.\n"
    );
    u
}

/// The standard names the agent accepts and ignores, as a sentence (for `--help` and the man
/// page).
pub fn ignored_text() -> String {
    let names: Vec<&str> = PARAMS
        .iter()
        .filter(|p| p.setting == Setting::Ignored)
        .map(|p| p.name)
        .collect();
    format!(
        "Accepted and ignored (standard fence-agents and Pacemaker names this agent has no use \
         for, so that a fencer passing them cannot break fencing): {}.",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_has_the_fence_agents_shape() {
        let m = metadata();
        assert!(
            m.starts_with("<?xml version=\"1.0\" ?>\n<resource-agent name=\"fence_vmstonith\"")
        );
        assert!(m.contains("<getopt mixed=\"-o, --action=[action]\" />"));
        assert!(m.contains("<content type=\"string\" default=\"reboot\" />"));
        assert!(m.contains("name=\"plug\" unique=\"0\" required=\"0\" obsoletes=\"port\""));
        assert!(m.contains("name=\"port\" unique=\"0\" required=\"0\" deprecated=\"1\""));
        assert!(m.contains("<getopt mixed=\"-n, --plug=[id]\" />"));
        assert!(m.contains("<getopt mixed=\"--key-file=[path]\" />"));
        assert!(m.contains("<getopt mixed=\"-v, --verbose\" />"));
        assert!(m.contains("<action name=\"on\" automatic=\"0\"/>"));
        assert!(m.contains("<action name=\"list-status\" />"));
        assert!(m.contains("<action name=\"validate-all\" />"));
        // the ignored standard names are not advertised
        assert!(!m.contains("power_timeout") && !m.contains("nodename"));
        assert!(m.trim_end().ends_with("</resource-agent>"));
    }

    #[test]
    fn escaping() {
        assert_eq!(xml("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c'");
    }

    #[test]
    fn usage_lists_the_options() {
        let u = usage();
        for o in [
            "-o, --action=[action]",
            "-n, --plug=[id]",
            "--key-file=[path]",
            "--socket=[path]",
            "--requester=[name]",
            "--timeout=[seconds]",
            "--delay=[seconds]",
            "-v, --verbose",
            "-V, --version",
            "-h, --help",
        ] {
            assert!(u.contains(o), "{o} missing from\n{u}");
        }
        for p in PARAMS.iter().filter(|p| p.setting == Setting::Ignored) {
            assert!(u.contains(p.name), "ignored {} missing from\n{u}", p.name);
        }
    }
}
