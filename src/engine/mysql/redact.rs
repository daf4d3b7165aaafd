//! Query text from the processlist carries literals — sometimes passwords
//! (`ALTER USER ... IDENTIFIED BY '...'`) or personal data. Before a query is shown in a
//! check message it goes through [`redact_literals`] and [`shorten`]. Pure functions.

/// Replaces every literal in MySQL/MariaDB SQL with `?`: quoted strings (`'...'`, `"..."`,
/// with backslash escapes and doubled quotes, also when cut off by truncation), numbers
/// (`42`, `1.5`, `.5`, `3e-7`), hex and bit values (`0x1F`, `X'1F'`, `0b101`, `b'101'`) and
/// strings with a character-set introducer (`_utf8mb4'x'`, `N'x'`). Identifiers (also
/// `` `quoted` `` ones and names such as `t1`) and comments are kept; runs of whitespace
/// become one space, so the result fits on one line.
pub fn redact_literals(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                i = skip_string(&chars, i);
                out.push('?');
            }
            '`' => {
                // Quoted identifier: kept verbatim (a doubled `` ` `` is an escaped one).
                let start = i;
                i += 1;
                while i < n {
                    if chars[i] == '`' {
                        if i + 1 < n && chars[i + 1] == '`' {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                out.extend(&chars[start..i]);
            }
            '/' if i + 1 < n && chars[i + 1] == '*' => {
                let start = i;
                i += 2;
                while i < n && !(chars[i] == '*' && i + 1 < n && chars[i + 1] == '/') {
                    i += 1;
                }
                i = (i + 2).min(n);
                push_collapsed(&mut out, &chars[start..i]);
            }
            '#' => {
                let start = i;
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
                push_collapsed(&mut out, &chars[start..i]);
            }
            '-' if i + 2 < n && chars[i + 1] == '-' && chars[i + 2].is_whitespace()
                || (i + 2 == n && chars.get(i + 1) == Some(&'-')) =>
            {
                let start = i;
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
                push_collapsed(&mut out, &chars[start..i]);
            }
            c if c.is_whitespace() => {
                while i < n && chars[i].is_whitespace() {
                    i += 1;
                }
                if !out.is_empty() && i < n {
                    out.push(' ');
                }
            }
            c if c.is_ascii_digit()
                || (c == '.'
                    && i + 1 < n
                    && chars[i + 1].is_ascii_digit()
                    && !prev_is_ident(&out)) =>
            {
                i = skip_number(&chars, i);
                out.push('?');
            }
            c if is_ident_char(c) => {
                let start = i;
                while i < n && is_ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next_is_quote = i < n && chars[i] == '\'';
                let lower = word.to_ascii_lowercase();
                if next_is_quote
                    && (matches!(lower.as_str(), "x" | "b" | "n") || word.starts_with('_'))
                {
                    // X'1F', b'101', N'text', _utf8mb4'text': the whole thing is a literal.
                    i = skip_string(&chars, i);
                    out.push('?');
                } else {
                    out.push_str(&word);
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.trim_end().to_string()
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn prev_is_ident(out: &str) -> bool {
    out.chars()
        .next_back()
        .is_some_and(|c| is_ident_char(c) || c == '`')
}

fn push_collapsed(out: &mut String, chars: &[char]) {
    let mut in_space = false;
    for &c in chars {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
}

/// Skips a quoted string starting at `chars[i]` (the quote); returns the index after it.
/// An unterminated string (truncated query text) runs to the end.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let n = chars.len();
    let mut j = i + 1;
    while j < n {
        let c = chars[j];
        if c == '\\' {
            j += 2;
            continue;
        }
        if c == quote {
            if j + 1 < n && chars[j + 1] == quote {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    n
}

/// Skips a number (decimal, exponent, `0x..`, `0b..`) starting at `chars[i]`; a number
/// glued to letters (`1st`, `2fa_codes`) is an identifier in MySQL and is skipped whole too.
fn skip_number(chars: &[char], i: usize) -> usize {
    let n = chars.len();
    let mut j = i;
    if chars[j] == '0' && j + 1 < n && matches!(chars[j + 1], 'x' | 'X' | 'b' | 'B') {
        j += 2;
        while j < n && chars[j].is_ascii_hexdigit() {
            j += 1;
        }
    } else {
        while j < n && (chars[j].is_ascii_digit() || chars[j] == '.') {
            j += 1;
        }
        if j < n && matches!(chars[j], 'e' | 'E') {
            let mut k = j + 1;
            if k < n && matches!(chars[k], '+' | '-') {
                k += 1;
            }
            if k < n && chars[k].is_ascii_digit() {
                j = k;
                while j < n && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
        }
    }
    while j < n && is_ident_char(chars[j]) {
        j += 1;
    }
    j
}

/// Cuts `s` to at most `max` characters, ending with `…` when something was cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// A server error message (replication errors quote rows and statements, with quotes
/// nested unescaped) cut before its first quoted part, so no data or literal is shown.
pub fn message_prefix(msg: &str) -> String {
    match msg.find(['\'', '"']) {
        Some(i) => format!("{}…", msg[..i].trim_end()),
        None => msg.to_string(),
    }
}

/// Query text as shown in a check message: literals replaced, one line, ~80 characters.
pub fn query_for_message(sql: &str) -> String {
    shorten(&redact_literals(sql), 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_become_placeholders() {
        assert_eq!(
            redact_literals("SELECT * FROM users WHERE email = 'a@b.c' AND name = \"Bob\""),
            "SELECT * FROM users WHERE email = ? AND name = ?"
        );
        assert_eq!(
            redact_literals("ALTER USER 'app'@'%' IDENTIFIED BY 'hunter2'"),
            "ALTER USER ?@? IDENTIFIED BY ?"
        );
    }

    #[test]
    fn escapes_and_doubled_quotes_stay_inside_the_string() {
        assert_eq!(
            redact_literals(r"SELECT 'it\'s', 'it''s', 'a\\' , x"),
            "SELECT ?, ?, ? , x"
        );
        assert_eq!(redact_literals(r#"SELECT "say ""hi""""#), "SELECT ?");
    }

    #[test]
    fn a_truncated_string_is_hidden_to_the_end() {
        assert_eq!(
            redact_literals("INSERT INTO t VALUES ('secret that was cut"),
            "INSERT INTO t VALUES (?"
        );
    }

    #[test]
    fn numbers_and_hex_become_placeholders() {
        assert_eq!(
            redact_literals("SELECT SLEEP(5), 1.5, .5, 3e-7, -42 FROM t1 WHERE id IN (1,2)"),
            "SELECT SLEEP(?), ?, ?, ?, -? FROM t1 WHERE id IN (?,?)"
        );
        assert_eq!(
            redact_literals("SELECT 0x1F, X'1F', x'ab', 0b101, b'101', N'text', _utf8mb4'x'"),
            "SELECT ?, ?, ?, ?, ?, ?, ?"
        );
    }

    #[test]
    fn identifiers_and_comments_are_kept() {
        assert_eq!(
            redact_literals("/* dbwarden */ SELECT `col 1`, t2.c3, `a``b` FROM db1.t2"),
            "/* dbwarden */ SELECT `col 1`, t2.c3, `a``b` FROM db1.t2"
        );
        assert_eq!(
            redact_literals("SELECT 1 -- it's a comment\nFROM t # don't\nWHERE a = 'x'"),
            "SELECT ? -- it's a comment FROM t # don't WHERE a = ?"
        );
        assert_eq!(redact_literals("SELECT a-1, a--1"), "SELECT a-?, a--?");
    }

    #[test]
    fn messages_are_cut_before_quoted_data() {
        assert_eq!(
            message_prefix(
                "Could not execute Write_rows event on table db.t; Duplicate entry '1' for key"
            ),
            "Could not execute Write_rows event on table db.t; Duplicate entry…"
        );
        assert_eq!(
            message_prefix("error reconnecting to master"),
            "error reconnecting to master"
        );
    }

    #[test]
    fn whitespace_collapses_to_one_line() {
        assert_eq!(
            redact_literals("  SELECT\n\t a\r\n  FROM   t\n"),
            "SELECT a FROM t"
        );
    }

    #[test]
    fn shortens_on_character_boundaries() {
        assert_eq!(shorten("abc", 80), "abc");
        assert_eq!(shorten("äöüäöüäöü", 4), "äöü…");
        let long = format!("SELECT {} FROM t WHERE x = 'secret'", "c, ".repeat(40));
        let shown = query_for_message(&long);
        assert!(shown.chars().count() <= 80, "{shown}");
        assert!(shown.ends_with('…'), "{shown}");
        assert!(!shown.contains("secret"));
    }
}
