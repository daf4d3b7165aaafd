//! Postgres engine (being written: see issue "Health checks that a DBA trusts").

use super::{EngineError, HealthReport};
use crate::config::Target;
use crate::health::{CheckSpec, Measurement, Status};

/// Postgres checks (names, units, built-in thresholds).
pub const CHECKS: &[CheckSpec] = &[];

pub struct PostgresEngine {
    target: String,
}

impl PostgresEngine {
    pub fn open(target: &Target) -> Result<Self, EngineError> {
        Ok(PostgresEngine {
            target: target.name.clone(),
        })
    }

    pub async fn health(&self) -> HealthReport {
        HealthReport {
            measurements: vec![Measurement::verdict(
                "connectivity",
                Status::Unknown,
                None,
                format!(
                    "target {}: the postgres engine is not part of this build yet",
                    self.target
                ),
            )],
            ..HealthReport::default()
        }
    }

    pub async fn cancel_running(&self) {}

    pub async fn close(&self) {}
}
