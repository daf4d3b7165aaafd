//! The bearer token mutating calls need: from `[daemon] api_token_file`, else the systemd
//! credential `$CREDENTIALS_DIRECTORY/api_token`; trailing whitespace trimmed; re-read on
//! SIGHUP ([`Token::load`] again); compared in constant time. Without a token, mutating
//! endpoints are disabled (403), never open.

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{Config, Secret};

/// The systemd credential name read when `api_token_file` is not set.
pub const CREDENTIAL: &str = "api_token";

/// The token as last loaded.
#[derive(Clone, Debug)]
pub enum Token {
    /// Mutating calls need this token.
    Set(Secret),
    /// No token configured: mutating calls are refused.
    NotConfigured,
    /// A token is configured but could not be read (reason, without the token).
    Unreadable(String),
}

impl Token {
    /// Reads the token a config names.
    pub fn load(config: &Config) -> Token {
        if let Some(f) = &config.daemon.api_token_file {
            return match crate::config::secret::read_secret_file(f) {
                Ok(s) => Token::Set(s),
                Err(e) => Token::Unreadable(format!("daemon.api_token_file: {e}")),
            };
        }
        let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
            return Token::NotConfigured;
        };
        let path = std::path::Path::new(&dir).join(CREDENTIAL);
        if !path.exists() {
            return Token::NotConfigured;
        }
        match crate::config::secret::read_secret_file(&path.to_string_lossy()) {
            Ok(s) => Token::Set(s),
            Err(e) => Token::Unreadable(format!("systemd credential {CREDENTIAL}: {e}")),
        }
    }

    /// A word for the log.
    pub fn describe(&self) -> &'static str {
        match self {
            Token::Set(_) => "set",
            Token::NotConfigured => "not configured (mutating endpoints disabled)",
            Token::Unreadable(_) => "unreadable (mutating endpoints disabled)",
        }
    }

    /// Checks a request's `Authorization: Bearer <token>`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let expected = match self {
            Token::Set(s) => s,
            Token::NotConfigured => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "disabled",
                    "mutating endpoints are disabled: no API token is configured; set [daemon] api_token_file (or the systemd credential api_token) and reload",
                ));
            }
            Token::Unreadable(why) => {
                tracing::error!(error = %why, "API token cannot be read; mutating endpoints refused");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "token_unreadable",
                    "mutating endpoints are unavailable: the configured API token cannot be read; the daemon's log says why",
                ));
            }
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(given) = given else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs `Authorization: Bearer <token>` (the token in daemon.api_token_file)",
            ));
        };
        if equal(given.as_bytes(), expected.expose().as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the bearer token is not the configured API token",
            ))
        }
    }
}

/// Constant-time equality that does not reveal the length either: both sides are hashed
/// first, so the comparison is always of 32 bytes.
fn equal(a: &[u8], b: &[u8]) -> bool {
    let ha: [u8; 32] = Sha256::digest(a).into();
    let hb: [u8; 32] = Sha256::digest(b).into();
    ha.ct_eq(&hb).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[test]
    fn a_token_is_required_refused_or_disabled() {
        let t = Token::Set(Secret::new("s3cret"));
        assert!(t.check(&headers(Some("Bearer s3cret"))).is_ok());
        let code = |r: Result<(), ApiError>| r.err().map(|e| e.status.as_u16());
        assert_eq!(code(t.check(&headers(None))), Some(401));
        assert_eq!(code(t.check(&headers(Some("Basic s3cret")))), Some(401));
        assert_eq!(code(t.check(&headers(Some("Bearer s3cre")))), Some(403));
        assert_eq!(code(t.check(&headers(Some("Bearer s3cret2")))), Some(403));
        let off = Token::NotConfigured;
        assert_eq!(code(off.check(&headers(Some("Bearer s3cret")))), Some(403));
        let bad = Token::Unreadable("x".into());
        assert_eq!(code(bad.check(&headers(Some("Bearer s3cret")))), Some(503));
    }

    #[test]
    fn no_message_carries_the_token() {
        let t = Token::Set(Secret::new("s3cret"));
        for h in [None, Some("Bearer wrong"), Some("Bearer s3cret ")] {
            if let Err(e) = t.check(&headers(h)) {
                assert!(!e.message.contains("s3cret"), "{}", e.message);
            }
        }
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
