//! Email over SMTP (lettre): STARTTLS, implicit TLS or plain (a relay on loopback),
//! optional AUTH, several recipients. A plain-text body with the same facts as the other
//! channels; the subject leads with the status word (`[dbwarden] CRITICAL orders@db1: 2
//! checks failing`, `[dbwarden] RESOLVED orders@db1: OK (was CRITICAL)`), and the
//! Message-ID is `<idempotency-key@agent>`, so a retry after an ambiguous failure is the
//! same message to a receiver that deduplicates.
//!
//! Every send builds its own transport (alerts are rare; a pooled connection the server
//! closed is a known lettre trap, #743) and is wrapped in `tokio::time::timeout`: lettre's
//! own timeout covers only each socket operation, not the whole exchange (#1027).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{ChannelsError, SecretSource, headline, plain_text, scrub};
use crate::alerts::{DeliveryError, Notification};
use crate::config::{ChannelConfig, Secret};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (required: a server without it fails).
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
    /// No TLS at all: only for a relay on loopback.
    None,
}

/// A `[[channel]] kind = "email"`.
pub struct Email {
    name: String,
    host: String,
    port: u16,
    tls: TlsMode,
    ca_file: Option<String>,
    username: Option<String>,
    password: Option<SecretSource>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    public_url: Option<String>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl Email {
    pub fn new(ch: &ChannelConfig, public_url: Option<String>) -> Result<Email, ChannelsError> {
        let bad = |what: &str| ChannelsError(format!("channel {}: {what}", ch.name));
        let raw = ch
            .smtp_url
            .as_ref()
            .ok_or_else(|| bad("smtp_url is missing"))?;
        let url = url::Url::parse(raw.expose())
            .map_err(|_| bad(&format!("smtp_url {raw} is not a URL")))?;
        let tls = match (ch.tls.as_deref(), url.scheme()) {
            (Some("starttls"), _) => TlsMode::StartTls,
            (Some("implicit"), _) => TlsMode::Implicit,
            (Some("none"), _) => TlsMode::None,
            (Some(other), _) => return Err(bad(&format!("\"{other}\" is not a TLS mode"))),
            (None, "smtps") => TlsMode::Implicit,
            (None, "smtp") => TlsMode::StartTls,
            (None, s) => return Err(bad(&format!("smtp_url scheme {s}: is not smtp or smtps"))),
        };
        let host = url
            .host_str()
            .ok_or_else(|| bad("smtp_url has no host"))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = url.port().unwrap_or(match tls {
            TlsMode::Implicit => 465,
            TlsMode::StartTls => 587,
            TlsMode::None => 25,
        });
        let username = ch.username.clone().or_else(|| {
            let u = url.username();
            (!u.is_empty()).then(|| u.to_string())
        });
        let password = match (&ch.password_file, &ch.password_env, url.password()) {
            (Some(f), _, _) => Some(SecretSource::File(f.clone())),
            (None, Some(v), _) => Some(SecretSource::Env(v.clone())),
            (None, None, Some(p)) => {
                let p = percent_decode(p);
                Some(SecretSource::Inline(Secret::new(p)))
            }
            _ => None,
        };
        let from: Mailbox = ch
            .from
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|_| bad("from is not an email address"))?;
        let to = ch
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|_| bad(&format!("to: \"{t}\" is not an email address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(bad("to: no recipient"));
        }
        Ok(Email {
            name: ch.name.clone(),
            host,
            port,
            tls,
            ca_file: ch.tls_ca_file.clone(),
            username,
            password,
            from,
            to,
            timeout: ch.timeout.unwrap_or(super::DEFAULT_TIMEOUT),
            public_url,
        })
    }

    /// The message for a notification.
    pub fn message(&self, n: &Notification) -> Result<Message, DeliveryError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject(n))
            .message_id(Some(message_id(n)))
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.clone());
        }
        b.body(plain_text(n, self.public_url.as_deref()))
            .map_err(|e| DeliveryError::Permanent {
                reason: format!("cannot build the email: {e}"),
            })
    }

    fn tls_parameters(&self) -> Result<TlsParameters, DeliveryError> {
        let mut p = TlsParameters::builder(self.host.clone());
        if let Some(f) = &self.ca_file {
            let path = crate::config::secret::expand_credentials_path(f)
                .ok()
                .flatten()
                .unwrap_or_else(|| f.into());
            let pem = std::fs::read(&path).map_err(|e| DeliveryError::Permanent {
                reason: format!(
                    "tls_ca_file {}: {}",
                    path.display(),
                    crate::config::secret::io_reason(&e)
                ),
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| DeliveryError::Permanent {
                reason: format!(
                    "tls_ca_file {}: not a PEM certificate ({e})",
                    path.display()
                ),
            })?;
            p = p.add_root_certificate(cert);
        }
        p.build().map_err(|e| DeliveryError::Permanent {
            reason: format!("cannot set up TLS for {}: {e}", self.host),
        })
    }

    /// Sends one notification to every recipient (one SMTP transaction).
    pub async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let password = match &self.password {
            Some(s) => Some(s.resolve("SMTP password")?),
            None => None,
        };
        let message = self.message(n)?;
        let tls = match self.tls {
            TlsMode::StartTls => Tls::Required(self.tls_parameters()?),
            TlsMode::Implicit => Tls::Wrapper(self.tls_parameters()?),
            TlsMode::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(user) = &self.username {
            let pw = password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        let transport = b.build();
        let secrets: Vec<&str> = password.iter().map(Secret::expose).collect();
        let where_ = format!("SMTP server {}:{}", self.host, self.port);
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, &where_, &secrets)),
            Err(_) => Err(DeliveryError::Retry {
                reason: format!(
                    "{where_} did not finish within {}",
                    humantime::format_duration(self.timeout)
                ),
                after: None,
            }),
        }
    }
}

/// `[dbwarden] CRITICAL orders@db1: 2 checks failing`.
pub fn subject(n: &Notification) -> String {
    format!("[dbwarden] {}", headline(n))
}

/// `<key@agent>`, each part reduced to characters a Message-ID may hold.
pub fn message_id(n: &Notification) -> String {
    fn atom(s: &str) -> String {
        let a: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let a = a.trim_matches('.').replace("..", ".");
        if a.is_empty() { "x".into() } else { a }
    }
    format!("<{}@{}>", atom(&n.key), atom(&n.agent))
}

/// SMTP 4xx, network trouble and timeouts are worth retrying; 5xx (a refused login, a
/// rejected recipient), TLS failures (a certificate that does not verify) and client-side
/// errors are not.
fn classify(e: &lettre::transport::smtp::Error, where_: &str, secrets: &[&str]) -> DeliveryError {
    let detail = scrub(&super::chain(e), secrets);
    if e.is_permanent() {
        let hint = match e.status().map(|c| c.to_string()) {
            Some(c) if c == "535" || c == "534" || c == "530" => {
                " (authentication failed: check username and password_file)"
            }
            _ => "",
        };
        DeliveryError::Permanent {
            reason: format!("{where_} refused: {detail}{hint}"),
        }
    } else if e.is_transient() {
        DeliveryError::Retry {
            reason: format!("{where_} deferred: {detail}"),
            after: None,
        }
    } else if e.is_tls() || looks_like_tls(&detail) {
        DeliveryError::Permanent {
            reason: format!(
                "{where_}: TLS failed: {detail} (check the host name, tls mode, and tls_ca_file for a private CA)"
            ),
        }
    } else if e.is_client() {
        DeliveryError::Permanent {
            reason: format!("{where_}: {detail}"),
        }
    } else {
        DeliveryError::Retry {
            reason: format!("{where_}: {detail}"),
            after: None,
        }
    }
}

/// A certificate or handshake failure reported by rustls through an I/O error (lettre wraps
/// those as connection errors during STARTTLS); matched on rustls's words, since the error
/// type is not reachable without depending on rustls.
fn looks_like_tls(detail: &str) -> bool {
    if super::certificate_failure(detail) {
        return true;
    }
    let d = detail.to_ascii_lowercase();
    [
        "certificate",
        "handshake",
        "unknownissuer",
        "tls alert",
        "peer sent no certificates",
    ]
    .iter()
    .any(|w| d.contains(w))
}

/// `%XX` escapes of a URL's userinfo decoded (a `+` stays a `+`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::alerts::AlertEvent;
    use crate::health::Status;
    use chrono::Utc;

    fn n(event: AlertEvent, from: Option<Status>, to: Status) -> Notification {
        Notification {
            key: "orders:ok>critical@1764511200".into(),
            agent: "db1.example.com".into(),
            target: "orders".into(),
            engine: "postgres".into(),
            event,
            from,
            to,
            at: Utc::now(),
            since: Utc::now(),
            summary: "2 checks failing".into(),
            checks: vec![],
            note: None,
        }
    }

    #[test]
    fn subjects_lead_with_the_status_word() {
        assert_eq!(
            subject(&n(AlertEvent::Firing, Some(Status::Ok), Status::Critical)),
            "[dbwarden] CRITICAL orders@db1.example.com: 2 checks failing"
        );
        assert_eq!(
            subject(&n(AlertEvent::Resolved, Some(Status::Critical), Status::Ok)),
            "[dbwarden] RESOLVED orders@db1.example.com: OK (was CRITICAL)"
        );
        assert!(
            subject(&n(AlertEvent::Reminder, Some(Status::Ok), Status::Warning))
                .starts_with("[dbwarden] REMINDER WARNING orders@")
        );
    }

    #[test]
    fn message_ids_are_key_at_agent_with_safe_characters() {
        let id = message_id(&n(AlertEvent::Firing, None, Status::Critical));
        assert_eq!(id, "<orders-ok-critical-1764511200@db1.example.com>");
    }

    #[test]
    fn url_passwords_are_percent_decoded() {
        assert_eq!(percent_decode("p%40ss%2Bw+rd%"), "p@ss+w+rd%");
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
    }
}
