//! Query text as shown in messages: literals replaced by `?` (live query text can carry
//! passwords and personal data, `ALTER ROLE x PASSWORD '...'`), whitespace collapsed,
//! trimmed to a readable length. Pure.

/// Replaces SQL literals with `?`: quoted strings (`'..'` with `''` escapes, `E'..'` with
/// backslash escapes, `B'..'`, `X'..'`, `U&'..'`), dollar-quoted strings (`$$..$$`,
/// `$tag$..$tag$`) and numbers. Identifiers (`t1`, `"Quoted 1"`), parameters (`$1`) and
/// comments are kept. An unterminated literal (text cut by the server) is replaced up to the
/// end, so a cut password never leaks.
pub fn redact_literals(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // Line comment: kept as is.
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        // Block comment (nesting, as PostgreSQL does): kept as is.
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("/*");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("*/");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Quoted identifier: kept.
        if c == '"' {
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == '"' {
                    if chars.get(i + 1) == Some(&'"') {
                        out.push('"');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            continue;
        }
        // String literal, with its optional prefix (E, B, X, N, U&).
        if c == '\'' {
            i = skip_string(&chars, i + 1, false);
            out.push('?');
            continue;
        }
        if c.is_ascii_alphabetic() && !prev_is_ident(&chars, i) {
            let upper = c.to_ascii_uppercase();
            if matches!(upper, 'E' | 'B' | 'X' | 'N') && chars.get(i + 1) == Some(&'\'') {
                i = skip_string(&chars, i + 2, upper == 'E');
                out.push('?');
                continue;
            }
            if upper == 'U' && chars.get(i + 1) == Some(&'&') && chars.get(i + 2) == Some(&'\'') {
                i = skip_string(&chars, i + 3, false);
                out.push('?');
                continue;
            }
        }
        // Dollar quoting: $$...$$ or $tag$...$tag$ (but not a parameter like $1).
        if c == '$' && !prev_is_ident(&chars, i) {
            if let Some(tag_end) = dollar_tag_end(&chars, i) {
                let tag: Vec<char> = chars[i..=tag_end].to_vec();
                let mut j = tag_end + 1;
                let mut closed = None;
                while j + tag.len() <= chars.len() {
                    if chars[j..j + tag.len()] == tag[..] {
                        closed = Some(j + tag.len());
                        break;
                    }
                    j += 1;
                }
                i = closed.unwrap_or(chars.len());
                out.push('?');
                continue;
            }
            // A parameter: keep `$` and its digits.
            out.push('$');
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        // Numbers: 42, 3.14, .5, 1e10, 0x1F (16+); not digits inside identifiers (t1).
        if (c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            && !prev_is_ident(&chars, i)
        {
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let exponent_sign =
                    matches!(d, '+' | '-') && matches!(chars.get(i - 1), Some('e') | Some('E'));
                if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push('?');
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Whether the character before `i` continues an identifier (so `t1` is not a number and
/// `e'x'` inside `nae'..` is not a prefix).
fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && {
        let p = chars[i - 1];
        p.is_alphanumeric() || p == '_' || p == '$'
    }
}

/// Index just past the closing quote of a string whose body starts at `i`.
fn skip_string(chars: &[char], mut i: usize, backslash_escapes: bool) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' if backslash_escapes => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// If a dollar-quote tag starts at `i` (`$$` or `$tag$`), the index of its closing `$`.
fn dollar_tag_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while j < chars.len() {
        let c = chars[j];
        if c == '$' {
            return Some(j);
        }
        if !(c.is_alphanumeric() || c == '_') {
            return None;
        }
        j += 1;
    }
    None
}

/// Collapses whitespace and cuts at `max` characters (with `…`).
pub fn shorten(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut s: String = collapsed.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// A query as shown in a message: redacted, one line, at most ~80 characters.
pub fn query_for_message(query: Option<&str>) -> String {
    match query {
        None => "query text not visible".into(),
        Some(q) if q.trim().is_empty() => "no query text".into(),
        Some(q) if q.starts_with('<') && q.ends_with('>') => q.to_string(),
        Some(q) => shorten(&redact_literals(q), 80),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_become_question_marks() {
        assert_eq!(
            redact_literals("ALTER ROLE app PASSWORD 's3cr''et'"),
            "ALTER ROLE app PASSWORD ?"
        );
        assert_eq!(
            redact_literals("SELECT * FROM t WHERE name = 'O''Brien' AND x = E'a\\'b'"),
            "SELECT * FROM t WHERE name = ? AND x = ?"
        );
        assert_eq!(
            redact_literals("SELECT B'1010', X'1F', U&'d\\0061t'"),
            "SELECT ?, ?, ?"
        );
    }

    #[test]
    fn dollar_quotes_and_parameters() {
        assert_eq!(redact_literals("DO $$BEGIN PERFORM 1; END$$"), "DO ?");
        assert_eq!(
            redact_literals("SELECT $fn$ it's $$ inside $fn$, $1, $2"),
            "SELECT ?, $1, $2"
        );
    }

    #[test]
    fn numbers_but_not_identifiers() {
        assert_eq!(
            redact_literals("SELECT t1.c2 FROM t1 WHERE id = 42 AND v > 3.5e-3 LIMIT .5"),
            "SELECT t1.c2 FROM t1 WHERE id = ? AND v > ? LIMIT ?"
        );
        assert_eq!(
            redact_literals("SELECT \"col 1\" FROM \"T 2\" WHERE a = -7"),
            "SELECT \"col 1\" FROM \"T 2\" WHERE a = -?"
        );
        assert_eq!(redact_literals("SELECT pg_sleep(30)"), "SELECT pg_sleep(?)");
    }

    #[test]
    fn comments_are_kept_and_cut_literals_do_not_leak() {
        assert_eq!(
            redact_literals("/* dbwarden */ SELECT 1 -- it's\nFROM x"),
            "/* dbwarden */ SELECT ? -- it's\nFROM x"
        );
        assert_eq!(
            redact_literals("UPDATE users SET pw = 'half-a-secr"),
            "UPDATE users SET pw = ?"
        );
        assert_eq!(redact_literals("SELECT $$unterminated"), "SELECT ?");
    }

    #[test]
    fn non_ascii_text_is_safe() {
        assert_eq!(
            redact_literals("SELECT 'äöü' AS größe, 5"),
            "SELECT ? AS größe, ?"
        );
    }

    #[test]
    fn message_form_is_short_and_one_line() {
        let q = format!("SELECT\n  {} FROM t WHERE a = 'x'", "col, ".repeat(40));
        let m = query_for_message(Some(&q));
        assert!(m.chars().count() <= 80, "{m}");
        assert!(m.ends_with('…'));
        assert!(!m.contains('\n'));
        assert_eq!(
            query_for_message(Some("<insufficient privilege>")),
            "<insufficient privilege>"
        );
        assert_eq!(query_for_message(None), "query text not visible");
    }
}
