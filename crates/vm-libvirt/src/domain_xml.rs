//! What pm-kvm-tools needs to know from a libvirt domain XML.

use serde::Serialize;

/// Target name of the virtio-serial port that carries our protocol (`/dev/virtio-ports/<name>`
/// in the guest). Fixed by the original tools; guests built for them keep working.
pub const VMCONNECTD_CHANNEL: &str = "vmconnectd";

/// A `<channel>` device of the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// `type` attribute (`unix`, `pty`, ...).
    pub kind: String,
    /// `<source mode=...>` (`bind` means QEMU listens and the host daemon connects).
    pub source_mode: Option<String>,
    /// `<source path=...>`: the host-side socket.
    pub source_path: Option<String>,
    /// `<target type=...>` (`virtio` for virtio-serial).
    pub target_type: Option<String>,
    /// `<target name=...>`: the port name the guest sees.
    pub target_name: Option<String>,
}

impl Channel {
    /// True for the channel our daemons use: a virtio-serial port named [`VMCONNECTD_CHANNEL`].
    pub fn is_vmconnectd(&self) -> bool {
        self.target_type.as_deref() == Some("virtio")
            && self.target_name.as_deref() == Some(VMCONNECTD_CHANNEL)
    }
}

/// The facts we use from a domain definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainXml {
    /// `<domain type=...>` (`kvm`, `qemu`).
    pub domain_type: String,
    /// `<name>`.
    pub name: String,
    /// `<uuid>`, when fixed in the XML (without it every start gets a new UUID).
    pub uuid: Option<String>,
    /// All `<channel>` devices.
    pub channels: Vec<Channel>,
}

/// Why a domain XML was rejected.
#[derive(Debug, thiserror::Error)]
pub enum DomainXmlError {
    /// Not well-formed XML.
    #[error("Domain XML is not well-formed")]
    Xml(#[from] roxmltree::Error),
    /// The root element is not `<domain>`.
    #[error("Domain XML's root element is <{0}>, expected <domain>")]
    NotADomain(String),
    /// No `<name>`.
    #[error("Domain XML has no <name>")]
    NoName,
}

impl DomainXml {
    /// Parse a domain XML document.
    pub fn parse(xml: &str) -> Result<Self, DomainXmlError> {
        let doc = roxmltree::Document::parse(xml)?;
        let root = doc.root_element();
        if !root.has_tag_name("domain") {
            return Err(DomainXmlError::NotADomain(
                root.tag_name().name().to_owned(),
            ));
        }
        let text_of = |tag: &str| {
            root.children()
                .find(|n| n.has_tag_name(tag))
                .and_then(|n| n.text())
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        };
        let name = text_of("name").ok_or(DomainXmlError::NoName)?;
        let channels = root
            .children()
            .filter(|n| n.has_tag_name("devices"))
            .flat_map(|d| d.children().filter(|n| n.has_tag_name("channel")))
            .map(|ch| {
                let source = ch.children().find(|n| n.has_tag_name("source"));
                let target = ch.children().find(|n| n.has_tag_name("target"));
                let attr = |node: Option<roxmltree::Node<'_, '_>>, a: &str| {
                    node.and_then(|n| n.attribute(a)).map(str::to_owned)
                };
                Channel {
                    kind: ch.attribute("type").unwrap_or("").to_owned(),
                    source_mode: attr(source, "mode"),
                    source_path: attr(source, "path"),
                    target_type: attr(target, "type"),
                    target_name: attr(target, "name"),
                }
            })
            .collect();
        Ok(Self {
            domain_type: root.attribute("type").unwrap_or("").to_owned(),
            name,
            uuid: text_of("uuid"),
            channels,
        })
    }

    /// The `vmconnectd` channel, if the domain has one.
    pub fn vmconnectd_channel(&self) -> Option<&Channel> {
        self.channels.iter().find(|c| c.is_vmconnectd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<domain type='qemu'>
  <name>g1</name>
  <uuid>6d1c2b7e-0000-4000-8000-000000000001</uuid>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/g1'/>
      <target type='virtio' name='vmconnectd'/>
    </channel>
  </devices>
</domain>"#;

    #[test]
    fn finds_name_uuid_and_the_vmconnectd_channel() {
        let d = DomainXml::parse(XML).unwrap();
        assert_eq!(d.name, "g1");
        assert_eq!(d.domain_type, "qemu");
        assert_eq!(
            d.uuid.as_deref(),
            Some("6d1c2b7e-0000-4000-8000-000000000001")
        );
        assert_eq!(d.channels.len(), 2);
        let ch = d.vmconnectd_channel().unwrap();
        assert_eq!(ch.source_mode.as_deref(), Some("bind"));
        assert_eq!(ch.source_path.as_deref(), Some("/var/lib/libvirt/qemu/g1"));
    }

    #[test]
    fn no_channel_no_uuid() {
        let d = DomainXml::parse("<domain type='kvm'><name> g2 </name></domain>").unwrap();
        assert_eq!(d.name, "g2");
        assert!(d.uuid.is_none());
        assert!(d.vmconnectd_channel().is_none());
    }

    #[test]
    fn rejects_what_is_not_a_domain() {
        assert!(matches!(
            DomainXml::parse("<network><name>x</name></network>"),
            Err(DomainXmlError::NotADomain(t)) if t == "network"
        ));
        assert!(matches!(
            DomainXml::parse("<domain><name/></domain>"),
            Err(DomainXmlError::NoName)
        ));
        assert!(matches!(
            DomainXml::parse("<domain"),
            Err(DomainXmlError::Xml(_))
        ));
    }
}
