//! Untrusted text (names and messages from a database) on its way to a terminal or a log
//! line: control characters are shown escaped, so a table named `x\nOK connectivity`
//! cannot forge a line and an ESC sequence cannot drive the terminal. JSON output stays
//! exact (serde escapes on its own).

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1), and the Unicode bidirectional
/// overrides that reorder what a terminal shows, written as an escape (`\n`, `\x1b`,
/// `\u{202e}`). Text without any comes back borrowed.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let n = u32::from(c);
                if n < 0x100 {
                    let _ = write!(out, "\\x{n:02x}");
                } else {
                    let _ = write!(out, "\\u{{{n:x}}}");
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines_or_drive_the_terminal() {
        let cases = [
            ("plain text, ünïcode", "plain text, ünïcode"),
            ("a\nOK        connectivity", "a\\nOK        connectivity"),
            ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
            ("cr\rtab\tdel\x7f", "cr\\rtab\\tdel\\x7f"),
            ("c1\u{9b}31m", "c1\\x9b31m"),
            ("rtl\u{202e}txt.exe", "rtl\\u{202e}txt.exe"),
        ];
        for (input, shown) in cases {
            assert_eq!(escape(input), shown, "{input:?}");
        }
        assert!(matches!(escape("fine"), Cow::Borrowed(_)));
    }
}
