//! The cluster-glue plugin `agents/stonith/external/vm-stonith` is a shell script and cannot
//! import the defaults: this test holds its copies to [`vm_fence::defaults`].

use vm_fence::defaults::{AGENT_MAX_TIMEOUT_SECS, AGENT_TIMEOUT_SECS};

/// The value of the plugin's top-level shell assignment `NAME=value`.
fn assignment(script: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let mut found = script
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::to_owned);
    let first = found.next();
    assert_eq!(found.next(), None, "{name} is assigned twice");
    first
}

#[test]
fn the_shell_plugin_uses_the_same_defaults() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../agents/stonith/external/vm-stonith"
    );
    let script = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        assignment(&script, "DEFAULT_TIMEOUT"),
        Some(AGENT_TIMEOUT_SECS.to_string()),
        "{path}: DEFAULT_TIMEOUT"
    );
    assert_eq!(
        assignment(&script, "MAX_TIMEOUT"),
        Some(AGENT_MAX_TIMEOUT_SECS.to_string()),
        "{path}: MAX_TIMEOUT"
    );
    // the usage text in its header states the default as well
    assert!(
        script.contains(&format!("retries included [{AGENT_TIMEOUT_SECS}]")),
        "{path}: the header's timeout default"
    );
}
