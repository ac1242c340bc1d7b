//! A small owned XML tree for reading *and editing* CIB documents.
//!
//! `roxmltree` parses (fast, strict, read-only); this module turns its tree into owned
//! [`Element`]s that can be changed and written back out. Attribute order and comments are kept,
//! so a CIB read, edited and written differs from the original only where we changed it.
//! Text content is kept verbatim; the CIB uses almost none.

use std::fmt::Write as _;

use vm_common::xml::escape;

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (unescaped).
    Text(String),
    /// A comment (its content, without `<!--`/`-->`).
    Comment(String),
}

/// An XML element with ordered attributes and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Tag name.
    pub name: String,
    /// Attributes in document order.
    pub attrs: Vec<(String, String)>,
    /// Children in document order.
    pub children: Vec<Node>,
}

/// The document could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("Not well-formed XML")]
pub struct XmlError(#[from] roxmltree::Error);

impl Element {
    /// A new element with no attributes or children.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: add (or replace) an attribute.
    #[must_use]
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: append a child element.
    #[must_use]
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Parse a document; returns its root element.
    pub fn parse(xml: &str) -> Result<Self, XmlError> {
        let doc = roxmltree::Document::parse(xml)?;
        Ok(Self::from_roxml(doc.root_element()))
    }

    fn from_roxml(node: roxmltree::Node<'_, '_>) -> Self {
        let mut el = Self::new(node.tag_name().name());
        el.attrs = node
            .attributes()
            .map(|a| (a.name().to_owned(), a.value().to_owned()))
            .collect();
        for child in node.children() {
            match child.node_type() {
                roxmltree::NodeType::Element => {
                    el.children.push(Node::Element(Self::from_roxml(child)));
                }
                roxmltree::NodeType::Text => {
                    let text = child.text().unwrap_or("");
                    // Indentation between elements is not content.
                    if !text.trim().is_empty() {
                        el.children.push(Node::Text(text.to_owned()));
                    }
                }
                roxmltree::NodeType::Comment => {
                    el.children
                        .push(Node::Comment(child.text().unwrap_or("").to_owned()));
                }
                _ => {}
            }
        }
        el
    }

    /// Value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `id` attribute.
    pub fn id(&self) -> Option<&str> {
        self.get("id")
    }

    /// Set attribute `name` (kept in place if present, appended otherwise).
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((name.to_owned(), value)),
        }
    }

    /// Remove attribute `name`; returns whether it was there.
    pub fn remove_attr(&mut self, name: &str) -> bool {
        let before = self.attrs.len();
        self.attrs.retain(|(k, _)| k != name);
        self.attrs.len() != before
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// Child elements, mutable.
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// First child element called `name`.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    /// First child element called `name`, mutable.
    pub fn find_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name == name)
    }

    /// The first child element called `name`, created (appended) if missing.
    pub fn find_or_create(&mut self, name: &str) -> &mut Element {
        let pos = self
            .children
            .iter()
            .position(|c| matches!(c, Node::Element(e) if e.name == name));
        let pos = pos.unwrap_or_else(|| {
            self.children.push(Node::Element(Element::new(name)));
            self.children.len() - 1
        });
        match &mut self.children[pos] {
            Node::Element(e) => e,
            // `pos` was chosen to point at an element.
            _ => unreachable!("position of an element"),
        }
    }

    /// Follow a path of child element names (`["configuration", "resources"]`).
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |el, name| el.find(name))
    }

    /// Follow a path of child element names, mutable.
    pub fn path_mut(&mut self, names: &[&str]) -> Option<&mut Element> {
        let mut el = self;
        for name in names {
            el = el.find_mut(name)?;
        }
        Some(el)
    }

    /// Every element in this subtree (this one first, depth-first, document order).
    pub fn descendants(&self) -> Vec<&Element> {
        fn walk<'a>(el: &'a Element, out: &mut Vec<&'a Element>) {
            out.push(el);
            for child in el.elements() {
                walk(child, out);
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The element with id `id` anywhere in this subtree.
    pub fn find_id(&self, id: &str) -> Option<&Element> {
        if self.id() == Some(id) {
            return Some(self);
        }
        self.elements().find_map(|e| e.find_id(id))
    }

    /// Append a child element.
    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Remove every direct child element for which `remove` returns true; returns how many.
    pub fn remove_children(&mut self, mut remove: impl FnMut(&Element) -> bool) -> usize {
        let before = self.children.len();
        self.children
            .retain(|c| !matches!(c, Node::Element(e) if remove(e)));
        before - self.children.len()
    }

    /// Replace the direct child with the same id as `new` in place; append it when absent.
    /// Returns whether an element was replaced.
    pub fn upsert(&mut self, new: Element) -> bool {
        let id = new.id().map(str::to_owned);
        for child in &mut self.children {
            if let Node::Element(e) = child {
                if id.is_some() && e.id() == id.as_deref() {
                    *e = new;
                    return true;
                }
            }
        }
        self.push(new);
        false
    }

    /// Serialise, indented by two spaces per level, with a trailing newline.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out, 0);
        out
    }

    /// Serialise on one line (no indentation), as Pacemaker's tools accept with `-X`.
    pub fn to_xml_compact(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    fn write_open(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}=\"{}\"", escape(v, true));
        }
    }

    fn write_to(&self, out: &mut String, depth: usize) {
        let indent = "  ".repeat(depth);
        out.push_str(&indent);
        self.write_open(out);
        if self.children.is_empty() {
            out.push_str("/>\n");
            return;
        }
        let text_only = self.children.iter().all(|c| matches!(c, Node::Text(_)));
        if text_only {
            out.push('>');
            for c in &self.children {
                if let Node::Text(t) = c {
                    out.push_str(&escape(t, false));
                }
            }
            let _ = writeln!(out, "</{}>", self.name);
            return;
        }
        out.push_str(">\n");
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_to(out, depth + 1),
                Node::Text(t) => {
                    let _ = writeln!(out, "{indent}  {}", escape(t.trim(), false));
                }
                Node::Comment(t) => {
                    let _ = writeln!(out, "{indent}  <!--{t}-->");
                }
            }
        }
        let _ = writeln!(out, "{indent}</{}>", self.name);
    }

    fn write_compact(&self, out: &mut String) {
        self.write_open(out);
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_compact(out),
                Node::Text(t) => out.push_str(&escape(t, false)),
                Node::Comment(t) => {
                    let _ = write!(out, "<!--{t}-->");
                }
            }
        }
        let _ = write!(out, "</{}>", self.name);
    }

    /// A canonical one-line-per-element rendering for comparisons: every element as its path
    /// plus sorted attributes, sorted. Two configurations are the same for Pacemaker (up to
    /// element order) when their canonical forms are equal.
    pub fn canonical(&self) -> Vec<String> {
        fn walk(el: &Element, path: &str, out: &mut Vec<String>) {
            let mut attrs: Vec<_> = el.attrs.iter().collect();
            attrs.sort();
            let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let here = format!("{path}/{}", el.name);
            out.push(format!("{here} {}", attrs.join(" ")));
            let key = format!("{here}[{}]", el.id().unwrap_or(""));
            for child in el.elements() {
                walk(child, &key, out);
            }
        }
        let mut out = Vec::new();
        walk(self, "", &mut out);
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<cib epoch="3" num_updates="1" admin_epoch="0">
  <configuration>
    <!-- keep me -->
    <resources>
      <primitive id="a" class="ocf" provider="pacemaker" type="Dummy"/>
    </resources>
    <constraints/>
  </configuration>
  <status/>
</cib>"#;

    #[test]
    fn round_trip_keeps_attribute_order_and_comments() {
        let el = Element::parse(DOC).unwrap();
        let again = Element::parse(&el.to_xml()).unwrap();
        assert_eq!(el, again);
        assert!(el.to_xml().contains("<!-- keep me -->"));
        assert!(
            el.to_xml()
                .starts_with(r#"<cib epoch="3" num_updates="1" admin_epoch="0">"#)
        );
    }

    #[test]
    fn escapes_what_must_be_escaped() {
        let el = Element::new("nvpair").attr("value", "a\"b<c>&d\ne");
        let xml = el.to_xml_compact();
        assert_eq!(xml, r#"<nvpair value="a&quot;b&lt;c&gt;&amp;d&#10;e"/>"#);
        assert_eq!(
            Element::parse(&xml).unwrap().get("value"),
            Some("a\"b<c>&d\ne")
        );
    }

    #[test]
    fn paths_ids_and_edits() {
        let mut el = Element::parse(DOC).unwrap();
        assert!(el.find_id("a").is_some());
        let res = el.path_mut(&["configuration", "resources"]).unwrap();
        assert!(!res.upsert(Element::new("primitive").attr("id", "b")));
        assert!(res.upsert(Element::new("primitive").attr("id", "a").attr("type", "X")));
        assert_eq!(res.elements().count(), 2);
        assert_eq!(res.remove_children(|e| e.id() == Some("b")), 1);
        assert_eq!(
            el.path(&["configuration", "resources"])
                .unwrap()
                .find_id("a")
                .unwrap()
                .get("type"),
            Some("X")
        );
        let cons = el
            .find_or_create("configuration")
            .find_or_create("constraints");
        cons.push(Element::new("rsc_location").attr("id", "l"));
        assert_eq!(
            el.descendants()
                .iter()
                .filter(|e| e.name == "rsc_location")
                .count(),
            1
        );
    }

    #[test]
    fn canonical_ignores_order() {
        let a = Element::parse(r#"<x><a id="1" p="1" q="2"/><b id="2"/></x>"#).unwrap();
        let b = Element::parse(r#"<x><b id="2"/><a q="2" id="1" p="1"/></x>"#).unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c = Element::parse(r#"<x><b id="2"/><a q="3" id="1" p="1"/></x>"#).unwrap();
        assert_ne!(a.canonical(), c.canonical());
    }
}
