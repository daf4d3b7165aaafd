//! Keeps the README true: every check in the catalogue is documented there, and the two
//! commands it starts with are the ones CI relies on.

#[test]
fn every_check_is_documented_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap_or_else(|e| panic!("README.md: {e}"));
    let missing: Vec<&str> = dbwarden::engine::catalog::all()
        .map(|s| s.name)
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "checks missing from README.md: {missing:?}"
    );
}

#[test]
fn readme_starts_with_the_two_commands() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap_or_else(|e| panic!("README.md: {e}"));
    let head: String = readme.lines().take(6).collect::<Vec<_>>().join("\n");
    assert!(
        head.contains("cargo run -- run -c config/dbwarden.toml"),
        "{head}"
    );
    assert!(head.contains("cargo test"), "{head}");
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run"))
        .unwrap_or_else(|e| panic!(".ci/run: {e}"));
    assert!(
        ci.lines().any(|l| l.trim() == "cargo test"),
        ".ci/run must run the README's test command"
    );
}

/// The rows of the first Markdown table after `heading` (a line starting with it).
fn table_after(readme: &str, heading: &str) -> String {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every check of an engine has a row in that engine's privilege table (a check missing
/// there leaves the DBA guessing which GRANT it needs).
#[test]
fn every_check_is_in_its_engines_privilege_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap_or_else(|e| panic!("README.md: {e}"));
    let pg = table_after(&readme, "### PostgreSQL versions and privileges");
    let my = table_after(
        &readme,
        "What each check needs (a check whose privilege is missing",
    );
    for (table, checks) in [
        (&pg, dbwarden::engine::postgres::CHECKS),
        (&my, dbwarden::engine::mysql::CHECKS),
    ] {
        let missing: Vec<&str> = checks
            .iter()
            .map(|s| s.name)
            .filter(|n| !table.contains(&format!("`{n}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "checks missing from their privilege table: {missing:?}"
        );
    }
}
