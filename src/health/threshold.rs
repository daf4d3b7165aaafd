//! Threshold values as written in the config ("80%", "1GB", "5m", 100) and their resolution:
//! built-in defaults, then `[thresholds]`, then the target's own `thresholds`.

use serde::{Deserialize, Serialize};

use super::catalog::{CheckSpec, Unit};

/// A threshold as written by the user: a number in the check's unit, or a string with a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ThresholdValue {
    Number(f64),
    Text(String),
}

/// A threshold the user wrote that does not fit the check's unit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(pub String);

impl ThresholdValue {
    /// Parses the value in `unit` (percent 0–100, bytes, seconds, milliseconds or a count).
    pub fn parse(&self, unit: Unit) -> Result<f64, ThresholdError> {
        let text = match self {
            ThresholdValue::Number(n) => return check_range(*n, unit),
            ThresholdValue::Text(t) => t.trim(),
        };
        let err = |what: &str| {
            ThresholdError(format!(
                "\"{text}\" is not {what}; write e.g. {}",
                example(unit)
            ))
        };
        let v = match unit {
            Unit::Percent => text
                .strip_suffix('%')
                .unwrap_or(text)
                .trim()
                .parse::<f64>()
                .map_err(|_| err("a percentage"))?,
            Unit::Bytes => parse_bytes(text).ok_or_else(|| err("a size"))?,
            Unit::Seconds => parse_duration(text)
                .ok_or_else(|| err("a duration"))?
                .as_secs_f64(),
            Unit::Milliseconds => {
                parse_duration(text)
                    .ok_or_else(|| err("a duration"))?
                    .as_secs_f64()
                    * 1000.0
            }
            Unit::Count | Unit::None => text.parse::<f64>().map_err(|_| err("a number"))?,
        };
        check_range(v, unit)
    }
}

fn check_range(v: f64, unit: Unit) -> Result<f64, ThresholdError> {
    if !v.is_finite() || v < 0.0 {
        return Err(ThresholdError(format!(
            "{v} is out of range: thresholds are finite and not negative"
        )));
    }
    if unit == Unit::Percent && v > 100.0 {
        return Err(ThresholdError(format!(
            "{v}% is out of range: a percentage is between 0 and 100"
        )));
    }
    Ok(v)
}

fn example(unit: Unit) -> &'static str {
    match unit {
        Unit::Percent => "\"80%\"",
        Unit::Bytes => "\"1GB\" or \"512MB\"",
        Unit::Seconds => "\"5m\" or \"30s\"",
        Unit::Milliseconds => "\"250ms\" or \"1s\"",
        Unit::Count | Unit::None => "100",
    }
}

/// A bare number is seconds; otherwise humantime ("5m", "1h 30m", "250ms").
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    if let Ok(n) = text.parse::<f64>() {
        return (n.is_finite() && n >= 0.0).then(|| std::time::Duration::from_secs_f64(n));
    }
    humantime::parse_duration(text).ok()
}

/// Sizes use PostgreSQL's convention: kB = 1024 bytes, MB = 1024 kB, and so on.
pub fn parse_bytes(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, suffix) = text.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(num * mult)
}

/// A check's effective thresholds for one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckThresholds {
    pub enabled: bool,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    pub floor: Option<f64>,
}

impl CheckThresholds {
    /// The built-in thresholds of a check.
    pub fn builtin(spec: &CheckSpec) -> Self {
        CheckThresholds {
            enabled: true,
            warning: spec.warning,
            critical: spec.critical,
            floor: spec.floor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ThresholdValue {
        ThresholdValue::Text(s.into())
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(t("80%").parse(Unit::Percent), Ok(80.0));
        assert_eq!(ThresholdValue::Number(95.0).parse(Unit::Percent), Ok(95.0));
        assert_eq!(t("1GB").parse(Unit::Bytes), Ok(1024.0 * 1024.0 * 1024.0));
        assert_eq!(t("512 MB").parse(Unit::Bytes), Ok(512.0 * 1024.0 * 1024.0));
        assert_eq!(t("5m").parse(Unit::Seconds), Ok(300.0));
        assert_eq!(t("5min").parse(Unit::Seconds), Ok(300.0));
        assert_eq!(t("250ms").parse(Unit::Milliseconds), Ok(250.0));
        assert_eq!(t("1s").parse(Unit::Milliseconds), Ok(1000.0));
        assert_eq!(t("30").parse(Unit::Seconds), Ok(30.0));
    }

    #[test]
    fn rejects_wrong_forms_with_an_example() {
        let e = t("lots").parse(Unit::Percent).err().map(|e| e.0);
        assert!(e.is_some_and(|e| e.contains("\"80%\"")));
        assert!(t("150%").parse(Unit::Percent).is_err());
        assert!(t("5 parsecs").parse(Unit::Bytes).is_err());
        assert!(ThresholdValue::Number(-1.0).parse(Unit::Count).is_err());
    }
}
