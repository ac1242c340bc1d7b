//! Reading this host node's transient attributes (those attrd writes into the CIB's `status`
//! section: ping and disk status, `-n/-v`), as the original vm-managerd read them.

use std::collections::BTreeMap;

use vm_pcmk::Pacemaker;

/// Most attributes kept of one node (a node has a few dozen; a CIB with more is not trusted
/// to be sane, and what is kept is bounded).
pub const MAX_ATTRIBUTES: usize = 1024;

/// Exit status of `cibadmin --query --xpath` when nothing matches (`CRM_EX_NOSUCH`): the node
/// has no transient attributes (yet).
const CRM_EX_NOSUCH: i32 = 105;

/// Why the attributes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The node name cannot be put in an XPath expression safely.
    #[error("node name {0:?} has characters vm-managerd does not put into an XPath query")]
    NodeName(String),
    /// cibadmin failed.
    #[error("reading the node's transient attributes")]
    Query(#[source] vm_pcmk::PcmkError),
    /// cibadmin's output is not the XML expected.
    #[error("parsing cibadmin's answer: {0}")]
    Parse(String),
}

/// Where attribute values come from.
pub trait Source: Send + Sync {
    /// The current transient attributes of this host node.
    fn read(&self) -> Result<BTreeMap<String, String>, ReadError>;
}

/// The live cluster (or a `CIB_file`), through `cibadmin`.
#[derive(Debug, Clone)]
pub struct CibSource {
    pcmk: Pacemaker,
    node: String,
}

impl CibSource {
    /// Attributes of `node` from the CIB Pacemaker's tools use in this environment.
    pub fn new(pcmk: Pacemaker, node: String) -> CibSource {
        CibSource { pcmk, node }
    }
}

impl Source for CibSource {
    fn read(&self) -> Result<BTreeMap<String, String>, ReadError> {
        // quotes cannot be escaped in XPath 1.0: a node name is letters, digits and . _ -
        if self.node.is_empty()
            || !self
                .node
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return Err(ReadError::NodeName(self.node.clone()));
        }
        let xpath = format!(
            "/cib/status/node_state[@uname='{}']/transient_attributes",
            self.node
        );
        let cmd = self
            .pcmk
            .tool("cibadmin")
            .args(["--query", "--xpath", xpath.as_str()]);
        match self
            .pcmk
            .run_ok("query the node's transient attributes", &cmd)
        {
            Ok(out) => parse(&out.stdout_text()),
            Err(vm_pcmk::PcmkError::Failed { code, .. }) if code == CRM_EX_NOSUCH => {
                Ok(BTreeMap::new())
            }
            Err(e) => Err(ReadError::Query(e)),
        }
    }
}

/// The nvpairs of a `transient_attributes` element (or of several, when cibadmin wraps its
/// matches in `<xpath-query>`).
pub fn parse(xml: &str) -> Result<BTreeMap<String, String>, ReadError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| ReadError::Parse(e.to_string()))?;
    let mut out = BTreeMap::new();
    for nv in doc
        .descendants()
        .filter(|n| n.has_tag_name("nvpair"))
        // attributes of a node's utilization or of rules are not node attributes
        .filter(|n| {
            n.parent()
                .is_some_and(|p| p.has_tag_name("instance_attributes"))
        })
    {
        let (Some(name), Some(value)) = (nv.attribute("name"), nv.attribute("value")) else {
            continue;
        };
        if out.len() >= MAX_ATTRIBUTES {
            break;
        }
        out.insert(name.to_owned(), value.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvpairs_of_transient_attributes_are_read() {
        let xml = r#"<transient_attributes id="1">
  <instance_attributes id="status-1">
    <nvpair id="status-1-default_ping_set" name="default_ping_set" value="100"/>
    <nvpair id="status-1-x" name="x" value="a b"/>
    <nvpair id="status-1-novalue" name="novalue"/>
  </instance_attributes>
  <utilization id="u"><nvpair id="u-cpu" name="cpu" value="1"/></utilization>
</transient_attributes>"#;
        let m = parse(xml).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["default_ping_set"], "100");
        assert_eq!(m["x"], "a b");
        parse("<a").unwrap_err();
    }

    #[test]
    fn node_names_that_would_break_the_xpath_are_refused() {
        let s = CibSource::new(Pacemaker::live(), "n1' or '1'='1".into());
        assert!(matches!(s.read(), Err(ReadError::NodeName(_))));
    }
}
