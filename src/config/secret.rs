//! Secrets and the places they hide: a [`Secret`] never prints, and URLs are shown with
//! their password replaced by `***`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string (password, token, webhook URL). `Debug`, `Display` and `Serialize` all
/// print `***`, so a secret cannot leak through logs, errors or `config show` by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; call only where it is handed to a driver or client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A connection URL that may carry a password. Printing it hides the password.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(s: impl Into<String>) -> Self {
        SecretUrl(s.into())
    }

    /// The full URL, password included; only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// Replaces the password of `scheme://user:password@host/...` with `***`; also hides
/// `password=` / `sslpassword=` query parameters. Text that does not parse as a URL is
/// returned with everything between `://` and the last `@` masked, to be safe.
pub fn redact_url(raw: &str) -> String {
    if let Ok(mut u) = url::Url::parse(raw) {
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret =
                    k.to_ascii_lowercase().contains("password") || k.eq_ignore_ascii_case("token");
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        if !pairs.is_empty() {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return u.to_string().replace("%2A%2A%2A", "***");
    }
    match (raw.find("://"), raw.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &raw[..s], &raw[at..]),
        _ => raw.to_string(),
    }
}

/// Expands a leading `${CREDENTIALS_DIRECTORY}` (systemd `LoadCredential=`), the only
/// variable expanded in config values. `Ok(None)` means the variable is not set here.
pub fn expand_credentials_path(raw: &str) -> Result<Option<PathBuf>, String> {
    const VAR: &str = "${CREDENTIALS_DIRECTORY}";
    if let Some(rest) = raw.strip_prefix(VAR) {
        return match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Ok(Some(Path::new(&dir).join(rest.trim_start_matches('/')))),
            None => Ok(None),
        };
    }
    if raw.contains("${") {
        return Err(format!(
            "only ${{CREDENTIALS_DIRECTORY}} may be used, and only at the start of the path (got {raw:?})"
        ));
    }
    Ok(Some(PathBuf::from(raw)))
}

/// Reads a secret file, trimming trailing whitespace and newlines.
pub fn read_secret_file(raw: &str) -> Result<Secret, String> {
    let path = match expand_credentials_path(raw)? {
        Some(p) => p,
        None => {
            return Err(format!(
                "{raw} uses ${{CREDENTIALS_DIRECTORY}}, which is only set when systemd starts the service with LoadCredential="
            ));
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim_end().to_string();
            if s.is_empty() {
                Err(format!("secret file {} is empty", path.display()))
            } else {
                Ok(Secret(s))
            }
        }
        Err(e) => Err(format!(
            "cannot read secret file {}: {}",
            path.display(),
            io_reason(&e)
        )),
    }
}

/// A short, actionable reason for an I/O error on a file the user named.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file; create it or fix the path".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied; make it readable by the user dbwarden runs as".into()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).ok().as_deref(), Some("\"***\""));
    }

    #[test]
    fn urls_hide_passwords() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/orders?sslmode=require"),
            "postgres://app:***@db:5432/orders?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/orders?password=hunter2"),
            "postgres://db/orders?password=***"
        );
        assert_eq!(
            redact_url("sqlite://./data/demo.db"),
            "sqlite://./data/demo.db"
        );
        let odd = redact_url("mysql://u:p@ss w0rd@host/db");
        assert!(!odd.contains("w0rd"), "{odd}");
        let u = SecretUrl::new("mysql://root:topsecret@127.0.0.1/test");
        assert!(!format!("{u} {u:?}").contains("topsecret"));
    }

    #[test]
    fn only_credentials_directory_expands() {
        assert!(expand_credentials_path("${HOME}/x").is_err());
        assert_eq!(
            expand_credentials_path("/etc/dbwarden/pw"),
            Ok(Some(PathBuf::from("/etc/dbwarden/pw")))
        );
    }
}
