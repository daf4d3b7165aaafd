//! Query-string and body parsing with errors in the API's shape: a 400 naming the field,
//! unknown parameters refused (a typo must not silently mean "default").

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::{ApiError, ApiResult};

/// The parsed query string of one request.
#[derive(Debug, Default)]
pub struct Params {
    map: HashMap<String, String>,
}

impl Params {
    /// Parses `raw`, refusing parameters not in `allowed` and repeated ones.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> ApiResult<Params> {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::bad_field(
                    &k,
                    if allowed.is_empty() {
                        "unknown parameter; this endpoint takes none".to_string()
                    } else {
                        format!("unknown parameter; known: {}", allowed.join(", "))
                    },
                ));
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ApiError::bad_field(&k, "given more than once"));
            }
        }
        Ok(Params { map })
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        self.map
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn bool(&self, k: &str) -> ApiResult<Option<bool>> {
        self.str(k)
            .map(|v| match v {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(ApiError::bad_field(k, "expected true or false")),
            })
            .transpose()
    }

    /// An integer in `min..=max`.
    pub fn int(&self, k: &str, min: i64, max: i64) -> ApiResult<Option<i64>> {
        self.str(k)
            .map(|v| match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_field(
                    k,
                    format!("expected a whole number from {min} to {max}"),
                )),
            })
            .transpose()
    }

    /// A duration (`30s`, `5m`, `1h`, `7d`).
    pub fn duration(&self, k: &str) -> ApiResult<Option<Duration>> {
        self.str(k)
            .map(|v| {
                humantime::parse_duration(v).map_err(|_| {
                    ApiError::bad_field(k, "expected a duration such as 30s, 5m, 1h, 7d")
                })
            })
            .transpose()
    }

    /// A time: RFC 3339 (`2026-11-30T12:00:00Z`), Unix seconds, or a duration meaning that
    /// long before `now` (`24h`).
    pub fn time(&self, k: &str, now: DateTime<Utc>) -> ApiResult<Option<DateTime<Utc>>> {
        self.str(k).map(|v| parse_time(k, v, now)).transpose()
    }

    /// One of `choices`.
    pub fn choice<'a>(&self, k: &str, choices: &[&'a str]) -> ApiResult<Option<&'a str>> {
        self.str(k)
            .map(|v| {
                choices.iter().copied().find(|c| *c == v).ok_or_else(|| {
                    ApiError::bad_field(k, format!("expected one of {}", choices.join(", ")))
                })
            })
            .transpose()
    }
}

fn parse_time(k: &str, v: &str, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = v.parse::<i64>()
        && let Some(t) = DateTime::from_timestamp(secs, 0)
    {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(v)
        && let Ok(d) = chrono::Duration::from_std(d)
        && let Some(t) = now.checked_sub_signed(d)
    {
        return Ok(t);
    }
    Err(ApiError::bad_field(
        k,
        "expected an RFC 3339 time (2026-11-30T12:00:00Z), Unix seconds, or a duration before now (24h)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_named() {
        let err = |r: ApiResult<Params>| r.err().map(|e| e.message).unwrap_or_default();
        assert!(err(Params::parse(Some("sicne=1h"), &["since"])).starts_with("sicne:"));
        assert!(err(Params::parse(Some("a=1&a=2"), &["a"])).starts_with("a:"));
        let p = Params::parse(
            Some("limit=0&since=x&by=total&at=24h"),
            &["limit", "since", "by", "at"],
        )
        .unwrap_or_default();
        let msg = p
            .int("limit", 1, 10)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(msg.starts_with("limit:"), "{msg}");
        assert!(p.duration("since").is_err());
        assert_eq!(
            p.choice("by", &["total", "mean"]).ok().flatten(),
            Some("total")
        );
        assert!(p.choice("by", &["mean"]).is_err());
        let now = Utc::now();
        assert_eq!(
            p.time("at", now).ok().flatten(),
            Some(now - chrono::Duration::hours(24))
        );
        assert_eq!(p.int("missing", 1, 10).ok(), Some(None));
    }

    #[test]
    fn times_in_three_spellings() {
        let now = Utc::now();
        let rfc = parse_time("t", "2026-11-30T12:00:00Z", now).ok();
        let unix = parse_time("t", "1796040000", now).ok();
        assert!(rfc.is_some());
        assert_eq!(rfc, unix);
        assert!(parse_time("t", "yesterday", now).is_err());
    }
}
