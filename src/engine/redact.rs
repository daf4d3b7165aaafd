//! Query text as shown in check messages. Live query text (`pg_stat_activity`, the MySQL
//! processlist) and server error messages can carry passwords and personal data
//! (`ALTER ROLE x PASSWORD '...'`, `ALTER USER ... IDENTIFIED BY '...'`,
//! `Duplicate entry '...'`), so before any of it reaches a message its literals are replaced
//! by `?` ([`redact_literals`]), its whitespace is collapsed and it is cut to a readable
//! length ([`shorten`], [`query_for_message`]). One tokenizer serves both SQL dialects;
//! [`Dialect`] switches what differs between them. Pure functions.

/// The SQL dialect a text is read in: which quotes delimit strings and identifiers, which
/// comments exist and how numbers look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `'..'` strings with `''` escapes (and, read both ways, backslash escapes
    /// as with standard_conforming_strings off);
    /// prefixed strings `E'..'` (backslash escapes), `B'..'`, `X'..'`, `N'..'`, `U&'..'`;
    /// dollar quoting (`$$..$$`, `$tag$..$tag$`) and `$1` parameters; `"quoted"`
    /// identifiers; `--` comments and nesting `/* */` comments. The text's layout (line
    /// breaks) is kept; [`shorten`] makes it one line.
    Postgres,
    /// MySQL/MariaDB: `'..'` and `".."` strings with doubled quotes and (read both ways, as
    /// NO_BACKSLASH_ESCAPES may be set) backslash escapes; `X'..'`, `B'..'`, `N'..'` and character-set introducers (`_utf8mb4'..'`);
    /// `0x..`/`0b..` numbers; `` `quoted` `` identifiers; `#` comments, `-- ` comments (the
    /// dashes followed by white space or the end, so `a--1` is arithmetic) and non-nesting
    /// `/* */` comments. The result is one line: every run of white space outside a quoted
    /// identifier becomes one space, and none is left at either end.
    Mysql,
}

impl Dialect {
    /// The quote around identifiers, kept verbatim.
    fn identifier_quote(self) -> char {
        match self {
            Dialect::Postgres => '"',
            Dialect::Mysql => '`',
        }
    }

    /// Whether `c` opens a plain (unprefixed) string literal.
    fn is_string_quote(self, c: char) -> bool {
        c == '\'' || (c == '"' && self == Dialect::Mysql)
    }
}

/// Replaces every literal in `sql` with `?`: quoted strings (with their prefixes), dollar
/// quotes ([`Dialect::Postgres`]), numbers (`42`, `1.5`, `.5`, `3e-7`, `0x1F`, `0b101`; a
/// number glued to letters such as `1st` or `2fa_codes` is replaced whole). Identifiers
/// (`t1`, quoted ones), parameters (`$1`) and comments are kept. An unterminated literal
/// (text cut by the server) is replaced up to the end, so a cut password never leaks. See
/// [`Dialect`] for what each dialect reads as what.
///
/// Whether a backslash escapes a quote in a plain string depends on the server's settings
/// (MySQL's `NO_BACKSLASH_ESCAPES`, PostgreSQL's `standard_conforming_strings`), which the
/// text does not tell. So it is read both ways and whatever either reading takes for a
/// literal is hidden: `'C:\', 'pw'` hides `pw` under both settings. MySQL's executable
/// comments (`/*! ... */`, `/*M! ... */`) are read as the SQL they are.
pub fn redact_literals(sql: &str, dialect: Dialect) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut hidden = vec![false; chars.len()];
    for plain_backslash_escapes in [true, false] {
        for (start, end) in literal_spans(&chars, dialect, plain_backslash_escapes) {
            hidden[start..end].fill(true);
        }
    }
    render(&chars, dialect, &hidden)
}

/// The literals of `chars` as `(start, end)` index ranges, reading plain strings with or
/// without backslash escapes.
fn literal_spans(
    chars: &[char],
    dialect: Dialect,
    plain_backslash_escapes: bool,
) -> Vec<(usize, usize)> {
    let n = chars.len();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < n {
        let c = chars[i];
        if let Some(end) = comment_end(chars, i, dialect) {
            i = end;
        } else if c == dialect.identifier_quote() {
            i = skip_quoted(chars, i, false);
        } else if dialect.is_string_quote(c) {
            let end = skip_quoted(chars, i, plain_backslash_escapes);
            spans.push((i, end));
            i = end;
        } else if c == '$' && dialect == Dialect::Postgres {
            match dollar_tag_end(chars, i).filter(|_| !prev_is_ident(chars, i)) {
                Some(tag_end) => {
                    let end = dollar_quote_end(chars, i, tag_end);
                    spans.push((i, end));
                    i = end;
                }
                // A parameter: `$` and its digits are kept.
                None => {
                    i += 1;
                    while i < n && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
        } else if (c.is_ascii_digit() && !prev_is_ident(chars, i))
            || (c == '.'
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                && !follows_name(chars, i, dialect))
        {
            let end = skip_number(chars, i, dialect);
            spans.push((i, end));
            i = end;
        } else if is_ident_char(c) {
            // A word (keyword or identifier, digits inside it included), or the prefix of a
            // string literal.
            let start = i;
            while i < n && is_ident_char(chars[i]) {
                i += 1;
            }
            if let Some((quote, escapes)) = prefixed_string(chars, start, i, dialect) {
                let end = skip_quoted(chars, quote, escapes);
                spans.push((start, end));
                i = end;
            }
        } else {
            i += 1;
        }
    }
    spans
}

/// The text with every run of `hidden` characters replaced by one `?`; comments and quoted
/// identifiers kept (white space collapsed outside quoted identifiers for one-line
/// dialects).
fn render(chars: &[char], dialect: Dialect, hidden: &[bool]) -> String {
    let n = chars.len();
    let one_line = dialect == Dialect::Mysql;
    // The end of a kept stretch: `end`, or the first hidden character before it.
    let clip = |from: usize, end: usize| (from..end).find(|&k| hidden[k]).unwrap_or(end);
    let mut out = String::with_capacity(n);
    let mut i = 0;
    while i < n {
        let c = chars[i];
        if hidden[i] {
            out.push('?');
            while i < n && hidden[i] {
                i += 1;
            }
        } else if let Some(end) = comment_end(chars, i, dialect) {
            let end = clip(i, end);
            push_comment(&mut out, &chars[i..end], one_line);
            i = end;
        } else if one_line && c.is_whitespace() {
            while i < n && !hidden[i] && chars[i].is_whitespace() {
                i += 1;
            }
            if i < n && !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else if c == dialect.identifier_quote() {
            let end = clip(i, skip_quoted(chars, i, false));
            out.extend(&chars[i..end]);
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    if one_line {
        out.truncate(out.trim_end().len());
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Whether the character before `i` continues a word, so a `$` there is no dollar quote
/// (`a$b$`, `$q$..$q$$$`), a letter there prefixes no string (`nae'..'`) and a digit there
/// starts no number.
fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && is_ident_char(chars[i - 1])
}

/// Whether the character before `i` ends a name (so `.5` after it is a qualifier,
/// `t1.5col`).
fn follows_name(chars: &[char], i: usize, dialect: Dialect) -> bool {
    i > 0 && (is_ident_char(chars[i - 1]) || chars[i - 1] == dialect.identifier_quote())
}

/// If a comment starts at `i`, the index just past it (a line comment ends before its
/// newline; an unterminated block comment runs to the end).
fn comment_end(chars: &[char], i: usize, dialect: Dialect) -> Option<usize> {
    let line_end = || {
        chars[i..]
            .iter()
            .position(|&c| c == '\n')
            .map_or(chars.len(), |p| i + p)
    };
    let executable = dialect == Dialect::Mysql
        && (chars.get(i + 2) == Some(&'!')
            || (chars.get(i + 2) == Some(&'M') && chars.get(i + 3) == Some(&'!')));
    match (chars[i], chars.get(i + 1)) {
        // MySQL's `/*! ... */` (and MariaDB's `/*M! ... */`) run their contents: SQL, not a
        // comment; their `/*!` and `*/` are kept as they are.
        ('/', Some('*')) if executable => None,
        ('/', Some('*')) => Some(block_comment_end(chars, i, dialect == Dialect::Postgres)),
        ('-', Some('-'))
            if dialect == Dialect::Postgres
                || chars.get(i + 2).is_none_or(|c| c.is_whitespace()) =>
        {
            Some(line_end())
        }
        ('#', _) if dialect == Dialect::Mysql => Some(line_end()),
        _ => None,
    }
}

/// The index just past the block comment opened at `i`; `nested`: inner `/*` open a level
/// (PostgreSQL), else the first `*/` closes it (MySQL).
fn block_comment_end(chars: &[char], i: usize, nested: bool) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < chars.len() {
        if chars[j] == '/' && chars.get(j + 1) == Some(&'*') && (nested || depth == 0) {
            depth += 1;
            j += 2;
        } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
            depth = depth.saturating_sub(1);
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    chars.len()
}

/// Appends a comment, its white space collapsed when the output is one line.
fn push_comment(out: &mut String, comment: &[char], one_line: bool) {
    for &c in comment {
        if one_line && c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
}

/// Skips the quoted text whose opening quote is at `i` (a string or a quoted identifier);
/// returns the index just past its closing quote. A doubled quote is an escaped one, and
/// with `backslash_escapes` a backslash escapes the next character. Unterminated (text cut
/// by the server): runs to the end.
fn skip_quoted(chars: &[char], i: usize, backslash_escapes: bool) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j];
        let escaped =
            (c == '\\' && backslash_escapes) || (c == quote && chars.get(j + 1) == Some(&quote));
        if escaped {
            j += 2;
        } else if c == quote {
            return j + 1;
        } else {
            j += 1;
        }
    }
    chars.len()
}

/// If the word `chars[start..end]` prefixes a string literal, the index of the string's
/// opening quote and whether backslashes escape in it.
fn prefixed_string(
    chars: &[char],
    start: usize,
    end: usize,
    dialect: Dialect,
) -> Option<(usize, bool)> {
    if prev_is_ident(chars, start) {
        return None;
    }
    let word = &chars[start..end];
    let single = match word {
        [c] => Some(c.to_ascii_lowercase()),
        _ => None,
    };
    let quote_next = chars.get(end) == Some(&'\'');
    match dialect {
        Dialect::Postgres => match single {
            Some(p @ ('e' | 'b' | 'x' | 'n')) if quote_next => Some((end, p == 'e')),
            Some('u') if chars.get(end) == Some(&'&') && chars.get(end + 1) == Some(&'\'') => {
                Some((end + 1, false))
            }
            _ => None,
        },
        Dialect::Mysql => {
            let is_prefix = matches!(single, Some('x' | 'b' | 'n')) || word[0] == '_';
            (quote_next && is_prefix).then_some((end, true))
        }
    }
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

/// The index just past the dollar-quoted string whose tag is `chars[start..=tag_end]`;
/// unterminated: the end.
fn dollar_quote_end(chars: &[char], start: usize, tag_end: usize) -> usize {
    let tag = &chars[start..=tag_end];
    let mut j = tag_end + 1;
    while j + tag.len() <= chars.len() {
        if chars[j..j + tag.len()] == *tag {
            return j + tag.len();
        }
        j += 1;
    }
    chars.len()
}

/// Skips a number starting at `i` (a digit, or `.` before one), by the dialect's rules:
/// - PostgreSQL: up to the first character that cannot continue it: ASCII letters, digits,
///   `.`, `_`, and a sign right after `e`/`E` (`3.5e-3`, `0x1F`, `1_000`; junk glued to a
///   number, `5abc`, goes with it);
/// - MySQL: decimal with an exponent whose sign is followed by a digit (`3e-7`), or
///   `0x`/`0b` with its digits; then every name character glued to it (`1st`, `2fa_codes`
///   are identifiers in MySQL, and are hidden whole).
fn skip_number(chars: &[char], i: usize, dialect: Dialect) -> usize {
    let n = chars.len();
    let mut j = i;
    match dialect {
        Dialect::Postgres => {
            j += 1;
            while j < n {
                let d = chars[j];
                let exponent_sign = matches!(d, '+' | '-') && matches!(chars[j - 1], 'e' | 'E');
                if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign {
                    j += 1;
                } else {
                    break;
                }
            }
        }
        Dialect::Mysql => {
            let radix = chars[j] == '0'
                && chars
                    .get(j + 1)
                    .is_some_and(|c| matches!(c, 'x' | 'X' | 'b' | 'B'));
            if radix {
                j += 2;
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
        }
    }
    j
}

/// Collapses white space to single spaces and cuts at `max` characters, ending with `…`
/// (after no trailing space) when something was cut.
pub fn shorten(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut s: String = collapsed.chars().take(max.saturating_sub(1)).collect();
    s.truncate(s.trim_end().len());
    s.push('…');
    s
}

/// A server error message (MySQL replication errors quote rows and statements, with quotes
/// nested unescaped) cut before its first quoted part, so no data or literal is shown.
pub fn message_prefix(msg: &str) -> String {
    match msg.find(['\'', '"']) {
        Some(i) => format!("{}…", msg[..i].trim_end()),
        None => msg.to_string(),
    }
}

/// A query as shown in a message: redacted, one line, at most 80 characters. `None`: the
/// text is not visible to the monitoring user. A server's status marker in place of the
/// text (PostgreSQL's `<insufficient privilege>`) is shown as it is.
pub fn query_for_message(query: Option<&str>, dialect: Dialect) -> String {
    match query {
        None => "query text not visible".into(),
        Some(q) if q.trim().is_empty() => "no query text".into(),
        Some(q) if is_status_marker(q) => q.to_string(),
        Some(q) => shorten(&redact_literals(q, dialect), 80),
    }
}

/// `<words>`: letters and spaces only, so nothing that could be a literal passes unredacted.
fn is_status_marker(q: &str) -> bool {
    q.strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .is_some_and(|inner| {
            !inner.trim().is_empty() && inner.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> String {
        redact_literals(sql, Dialect::Postgres)
    }

    fn mysql(sql: &str) -> String {
        redact_literals(sql, Dialect::Mysql)
    }

    // PostgreSQL.

    #[test]
    fn pg_strings_become_question_marks() {
        assert_eq!(
            pg("ALTER ROLE app PASSWORD 's3cr''et'"),
            "ALTER ROLE app PASSWORD ?"
        );
        assert_eq!(
            pg("SELECT * FROM t WHERE name = 'O''Brien' AND x = E'a\\'b'"),
            "SELECT * FROM t WHERE name = ? AND x = ?"
        );
        assert_eq!(pg("SELECT B'1010', X'1F', U&'d\\0061t'"), "SELECT ?, ?, ?");
    }

    #[test]
    fn pg_dollar_quotes_and_parameters() {
        assert_eq!(pg("DO $$BEGIN PERFORM 1; END$$"), "DO ?");
        assert_eq!(
            pg("SELECT $fn$ it's $$ inside $fn$, $1, $2"),
            "SELECT ?, $1, $2"
        );
    }

    #[test]
    fn pg_numbers_but_not_identifiers() {
        assert_eq!(
            pg("SELECT t1.c2 FROM t1 WHERE id = 42 AND v > 3.5e-3 LIMIT .5"),
            "SELECT t1.c2 FROM t1 WHERE id = ? AND v > ? LIMIT ?"
        );
        assert_eq!(
            pg("SELECT \"col 1\" FROM \"T 2\" WHERE a = -7"),
            "SELECT \"col 1\" FROM \"T 2\" WHERE a = -?"
        );
        assert_eq!(pg("SELECT pg_sleep(30)"), "SELECT pg_sleep(?)");
    }

    #[test]
    fn pg_comments_are_kept_and_cut_literals_do_not_leak() {
        assert_eq!(
            pg("/* dbwarden */ SELECT 1 -- it's\nFROM x"),
            "/* dbwarden */ SELECT ? -- it's\nFROM x"
        );
        assert_eq!(
            pg("UPDATE users SET pw = 'half-a-secr"),
            "UPDATE users SET pw = ?"
        );
        assert_eq!(pg("SELECT $$unterminated"), "SELECT ?");
    }

    #[test]
    fn pg_non_ascii_text_is_safe() {
        assert_eq!(pg("SELECT 'äöü' AS größe, 5"), "SELECT ? AS größe, ?");
    }

    #[test]
    fn pg_message_form_is_short_and_one_line() {
        let q = format!("SELECT\n  {} FROM t WHERE a = 'x'", "col, ".repeat(40));
        let m = query_for_message(Some(&q), Dialect::Postgres);
        assert!(m.chars().count() <= 80, "{m}");
        assert!(m.ends_with('…'));
        assert!(!m.contains('\n'));
        assert_eq!(
            query_for_message(Some("<insufficient privilege>"), Dialect::Postgres),
            "<insufficient privilege>"
        );
        assert_eq!(
            query_for_message(None, Dialect::Postgres),
            "query text not visible"
        );
    }

    #[test]
    fn pg_reads_its_own_syntax() {
        // `#` is an operator; `--` always starts a comment; block comments nest; `"`
        // quotes an identifier. Whether a backslash escapes in a plain string depends on
        // standard_conforming_strings: both readings are hidden, here as one literal.
        assert_eq!(pg(r"SELECT 'C:\', 'pw'"), "SELECT ?");
        assert_eq!(
            pg(r"ALTER ROLE app PASSWORD 'pa\'ss'"),
            "ALTER ROLE app PASSWORD ?"
        );
        assert_eq!(pg("SELECT 5 # 3"), "SELECT ? # ?");
        assert_eq!(pg("SELECT a--1"), "SELECT a--1");
        assert_eq!(
            pg("/* a /* b */ 'c' */ SELECT 'd'"),
            "/* a /* b */ 'c' */ SELECT ?"
        );
        assert_eq!(pg("SELECT \"it's\" FROM t"), "SELECT \"it's\" FROM t");
        assert_eq!(pg("SELECT 1_000, 0x1F, 0o17, 0x1E-1"), "SELECT ?, ?, ?, ?");
        // `$` inside a name is no dollar quote.
        assert_eq!(pg("SELECT a$$b$$, $1"), "SELECT a$$b$$, $1");
    }

    // MySQL/MariaDB.

    #[test]
    fn mysql_strings_become_placeholders() {
        assert_eq!(
            mysql("SELECT * FROM users WHERE email = 'a@b.c' AND name = \"Bob\""),
            "SELECT * FROM users WHERE email = ? AND name = ?"
        );
        assert_eq!(
            mysql("ALTER USER 'app'@'%' IDENTIFIED BY 'hunter2'"),
            "ALTER USER ?@? IDENTIFIED BY ?"
        );
    }

    #[test]
    fn mysql_escapes_and_doubled_quotes_stay_inside_the_string() {
        assert_eq!(mysql(r"SELECT 'it''s', x"), "SELECT ?, x");
        // With backslashes, the reading depends on NO_BACKSLASH_ESCAPES: whatever either
        // reading takes for a literal is hidden (here up to the end).
        assert_eq!(mysql(r"SELECT 'it\'s', 'it''s', 'a\\' , x"), "SELECT ?");
        assert_eq!(
            mysql(r"INSERT INTO creds VALUES ('C:\', 'hunter2')"),
            "INSERT INTO creds VALUES (?"
        );
        assert_eq!(
            mysql(r"SELECT 'a\\', 'pw', x"),
            "SELECT ?, ?, x",
            "a doubled backslash reads the same both ways"
        );
        assert_eq!(mysql(r#"SELECT "say ""hi""""#), "SELECT ?");
    }

    #[test]
    fn mysql_a_truncated_string_is_hidden_to_the_end() {
        assert_eq!(
            mysql("INSERT INTO t VALUES ('secret that was cut"),
            "INSERT INTO t VALUES (?"
        );
    }

    #[test]
    fn mysql_numbers_and_hex_become_placeholders() {
        assert_eq!(
            mysql("SELECT SLEEP(5), 1.5, .5, 3e-7, -42 FROM t1 WHERE id IN (1,2)"),
            "SELECT SLEEP(?), ?, ?, ?, -? FROM t1 WHERE id IN (?,?)"
        );
        assert_eq!(
            mysql("SELECT 0x1F, X'1F', x'ab', 0b101, b'101', N'text', _utf8mb4'x'"),
            "SELECT ?, ?, ?, ?, ?, ?, ?"
        );
    }

    #[test]
    fn mysql_identifiers_and_comments_are_kept() {
        assert_eq!(
            mysql("/* dbwarden */ SELECT `col 1`, t2.c3, `a``b` FROM db1.t2"),
            "/* dbwarden */ SELECT `col 1`, t2.c3, `a``b` FROM db1.t2"
        );
        assert_eq!(
            mysql("SELECT 1 -- it's a comment\nFROM t # don't\nWHERE a = 'x'"),
            "SELECT ? -- it's a comment FROM t # don't WHERE a = ?"
        );
        assert_eq!(mysql("SELECT a-1, a--1"), "SELECT a-?, a--?");
    }

    #[test]
    fn mysql_messages_are_cut_before_quoted_data() {
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
    fn mysql_whitespace_collapses_to_one_line() {
        assert_eq!(mysql("  SELECT\n\t a\r\n  FROM   t\n"), "SELECT a FROM t");
        assert_eq!(mysql("SELECT 1 # x  \n  FROM t"), "SELECT ? # x FROM t");
    }

    #[test]
    fn mysql_shortens_on_character_boundaries() {
        assert_eq!(shorten("abc", 80), "abc");
        assert_eq!(shorten("äöüäöüäöü", 4), "äöü…");
        let long = format!("SELECT {} FROM t WHERE x = 'secret'", "c, ".repeat(40));
        let shown = query_for_message(Some(&long), Dialect::Mysql);
        assert!(shown.chars().count() <= 80, "{shown}");
        assert!(shown.ends_with('…'), "{shown}");
        assert!(!shown.contains("secret"));
    }

    #[test]
    fn mysql_reads_its_own_syntax() {
        // `$` is part of a name (no dollar quoting); comments do not nest; `/*` inside a
        // string is no comment.
        assert_eq!(
            mysql("SELECT $$a$$, a$1 FROM t"),
            "SELECT $$a$$, a$1 FROM t"
        );
        assert_eq!(
            mysql("/* a /* b */ SELECT 'c' */"),
            "/* a /* b */ SELECT ? */"
        );
        assert_eq!(mysql("SELECT '/* x', 1"), "SELECT ?, ?");
        assert_eq!(mysql("SELECT 0x1E-1, 2fa_codes"), "SELECT ?-?, ?");
    }

    // Both.

    #[test]
    fn mysql_executable_comments_are_read_as_sql() {
        assert_eq!(
            mysql("/*!80000 SET PASSWORD = 'hunter2' */ SELECT 1"),
            "/*!? SET PASSWORD = ? */ SELECT ?"
        );
        assert_eq!(mysql("/*M!100500 SELECT 'x' */"), "/*M!? SELECT ? */");
        assert_eq!(mysql("/* 'kept' */ SELECT 1"), "/* 'kept' */ SELECT ?");
    }

    /// Random statements whose string literals hold a secret, written the way a server
    /// with either backslash setting would read them as strings: the secret never shows.
    #[test]
    fn secrets_in_strings_never_show_whatever_the_escaping() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pieces = [
            "SELECT", " ", "x", "t1", ",", "(", ")", "=", "1.5", "--c\n", "/* c */", "\n", "`q`",
            "\"id\"", "$1", "#x\n", "\\", "e",
        ];
        for _ in 0..20_000 {
            for dialect in [Dialect::Postgres, Dialect::Mysql] {
                let backslash = rng.random_bool(0.5);
                let mut sql = String::new();
                for _ in 0..rng.random_range(1..12) {
                    if rng.random_bool(0.3) {
                        // A string holding the secret, escaped for this reading.
                        let inner = match (backslash, rng.random_range(0..3)) {
                            (true, 0) => "a\\'b SECRET".to_string(),
                            (true, 1) => "C:\\\\ SECRET".to_string(),
                            (_, 2) => "it''s SECRET".to_string(),
                            _ => "SECRET".to_string(),
                        };
                        sql.push_str(&format!("'{inner}'"));
                    } else {
                        sql.push_str(pieces[rng.random_range(0..pieces.len())]);
                    }
                    // Two literals glued together would be one ('a''b'): keep them apart.
                    sql.push(' ');
                }
                let out = redact_literals(&sql, dialect);
                assert!(
                    !out.contains("SECRET"),
                    "{dialect:?}, backslash escapes {backslash}: {sql:?} -> {out:?}"
                );
            }
        }
    }

    #[test]
    fn message_form_of_missing_and_marker_text() {
        for d in [Dialect::Postgres, Dialect::Mysql] {
            assert_eq!(query_for_message(None, d), "query text not visible");
            assert_eq!(query_for_message(Some(" \n"), d), "no query text");
            // Only letters and spaces pass as a marker: anything else is redacted.
            assert_eq!(query_for_message(Some("<'pw' 42>"), d), "<? ?>");
        }
        assert_eq!(shorten("a  \n b", 80), "a b");
        assert_eq!(shorten("abc def", 5), "abc…");
    }
}
