//! What every engine's `dbwarden explain` guard shares: the statements that may be
//! explained, the judgement over the keywords an engine's own lexer read (outside strings,
//! quoted identifiers and comments), and the output format.

/// What a statement may start with.
pub const STARTS: &[&str] = &["SELECT", "WITH", "VALUES", "TABLE"];

/// The plan output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
}

/// Refuses a statement whose first keyword is not in [`STARTS`], or in which any keyword
/// of `refused` appears (`words` upper-cased, in order).
pub fn judge(words: &[String], refused: &[&str]) -> Result<(), String> {
    let Some(first) = words.first() else {
        return Err("no query given".into());
    };
    if !STARTS.contains(&first.as_str()) {
        return Err(format!(
            "only SELECT, WITH, VALUES or TABLE can be explained (this starts with {first}); give the query without EXPLAIN"
        ));
    }
    if let Some(w) = words.iter().find(|w| refused.contains(&w.as_str())) {
        return Err(format!(
            "refused: {w} appears in the query; only read-only queries are explained (no data-modifying statement, also not inside WITH)"
        ));
    }
    Ok(())
}

/// Test helper: every text of `pass` passes `check`; every `(text, why)` of `refuse` is
/// refused with a reason containing `why`.
#[cfg(test)]
pub fn assert_guard(
    check: impl Fn(&str) -> Result<(), String>,
    pass: &[&str],
    refuse: &[(&str, &str)],
) {
    for q in pass {
        assert!(check(q).is_ok(), "{q}: {:?}", check(q));
    }
    for (q, why) in refuse {
        let e = check(q).err().unwrap_or_else(|| panic!("{q} was accepted"));
        assert!(e.contains(why), "{q}: {e}");
    }
}
