//! The host daemons' clones (vm-connectd, vm-stonithd, vm-managerd) in a CIB snapshot, for
//! `check` and `status`.

use vm_pcmk::Cib;

use crate::config::Config;

/// The first clone whose id or whose primitive's id or agent type names `daemon` (`vm-connectd`,
/// `vm-stonithd`, `vm-managerd`), compared in lower case without `-` and `_`: the ids operators
/// give (`clnVmConnectd`, `cln_vm_connectd`), the project's agents
/// (`ocf:pm-kvm-tools:vm-connectd`, `systemd:vm-connectd`) and the original's primitives under
/// vm-anything alike.
pub fn find(cib: &Cib, daemon: &str) -> Option<String> {
    let needle = squash(daemon);
    cib.section("resources").and_then(|r| {
        r.elements()
            .filter(|c| c.name == "clone")
            .find(|c| {
                c.descendants().iter().any(|e| {
                    ["id", "type"]
                        .iter()
                        .any(|a| e.get(a).is_some_and(|v| squash(v).contains(&needle)))
                })
            })
            .and_then(|c| c.id().map(str::to_owned))
    })
}

fn squash(s: &str) -> String {
    s.to_ascii_lowercase().replace(['-', '_'], "")
}

/// The host daemons whose clones `status` shows, in its column order.
pub const DAEMONS: [&str; 3] = ["vm-connectd", "vm-stonithd", "vm-managerd"];

/// The clone of `daemon`: for vm-stonithd and vm-managerd the first `vm_stonithdN` /
/// `vm_managerdN` of vm-ctl.conf that the cluster has, else [`find`].
pub fn of(cib: &Cib, config: Option<&Config>, daemon: &str) -> Option<String> {
    let configured: Vec<String> = match (daemon, config) {
        ("vm-stonithd", Some(c)) => c.stonithd.clone(),
        ("vm-managerd", Some(c)) => c.managerd.iter().map(|r| r.rsc.clone()).collect(),
        _ => Vec::new(),
    };
    configured
        .into_iter()
        .find(|id| cib.is_clone(id))
        .or_else(|| find(cib, daemon))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_are_found_by_id_or_agent() {
        let cib = Cib::parse(
            r#"<cib><configuration><resources>
              <primitive id="vmconnectd-single" class="ocf" provider="pm-kvm-tools" type="vm-connectd"/>
              <clone id="clnA"><primitive id="a" class="systemd" type="vm-stonithd"/></clone>
              <clone id="cln_vm_connectd"><primitive id="b" class="ocf" provider="x" type="anything"/></clone>
              <clone id="clnMgr"><primitive id="c" class="ocf" provider="pm-kvm-tools" type="vm-managerd"/></clone>
            </resources></configuration></cib>"#,
        )
        .unwrap();
        assert_eq!(
            find(&cib, "vm-connectd").as_deref(),
            Some("cln_vm_connectd")
        );
        assert_eq!(find(&cib, "vm-stonithd").as_deref(), Some("clnA"));
        assert_eq!(of(&cib, None, "vm-managerd").as_deref(), Some("clnMgr"));
        assert_eq!(find(&cib, "vm-pingd"), None);
    }
}
