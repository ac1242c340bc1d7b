//! XML escaping, the one implementation for every program that writes XML by hand: CIB
//! fragments (vm-pcmk), fence agent metadata (fence_vmstonith), guest fence configuration
//! (vm-ctl).

/// Escapes text for XML content (`attr == false`) or a double-quoted attribute value
/// (`attr == true`: also `"` and the white space an attribute value would otherwise normalise
/// to spaces).
pub fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_what_each_place_needs() {
        assert_eq!(escape("a&<>\"'b", true), "a&amp;&lt;&gt;&quot;'b");
        assert_eq!(escape("a\"b\nc\td\re", true), "a&quot;b&#10;c&#9;d&#13;e");
        assert_eq!(escape("a\"b\nc\td\re<", false), "a\"b\nc\td&#13;e&lt;");
    }
}
