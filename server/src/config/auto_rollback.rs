//! `auto_rollback:` settings (under `master:` for every module, or under one module): roll a
//! freshly deployed version back when its failure rate passes a threshold.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::units::parse_duration;

/// What counts as a failure of a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Traps and timeouts only: the module broke (the default).
    Traps,
    /// Every error reply, including errors the handlers return on purpose.
    Errors,
}

/// When the master rolls a new version back on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRollback {
    /// How long after a deploy the new version is watched.
    pub window: Duration,
    /// Calls (over every node) before the rate is judged, so one early failure is no verdict.
    pub min_calls: u64,
    /// The failure rate, in percent of calls, above which the version is rolled back.
    pub max_failure_percent: u32,
    /// What counts as a failure.
    pub count: FailureKind,
}

/// The file format of `auto_rollback:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoRollback {
    pub enabled: Option<bool>,
    pub window: Option<String>,
    pub min_calls: Option<u64>,
    pub max_failure_rate: Option<String>,
    pub count: Option<String>,
}

/// Checks `raw` (at `path`), filling what it leaves out from `base` (the master's settings for
/// a module's, or the defaults). `Ok(None)`: disabled.
pub(super) fn parse(
    path: &str,
    raw: &RawAutoRollback,
    base: Option<&AutoRollback>,
) -> Result<Option<AutoRollback>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let mut spec = base.cloned().unwrap_or(AutoRollback {
        window: Duration::from_secs(60),
        min_calls: 20,
        max_failure_percent: 50,
        count: FailureKind::Traps,
    });
    if let Some(w) = &raw.window {
        let p = format!("{path}.window");
        spec.window = parse_duration(w).map_err(|m| ConfigError::invalid(&p, m))?;
        if spec.window.is_zero() || spec.window > Duration::from_secs(86_400) {
            return Err(ConfigError::invalid(p, "must be between 1ms and 24h"));
        }
    }
    if let Some(n) = raw.min_calls {
        if n == 0 {
            return Err(ConfigError::invalid(
                format!("{path}.min_calls"),
                "must be at least 1",
            ));
        }
        spec.min_calls = n;
    }
    if let Some(rate) = &raw.max_failure_rate {
        let p = format!("{path}.max_failure_rate");
        let percent = rate
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ConfigError::invalid(
                    &p,
                    format!("`{rate}` is not a percentage from 1% to 100% (e.g. 25%)"),
                )
            })?;
        spec.max_failure_percent = percent;
    }
    if let Some(count) = &raw.count {
        spec.count = match count.as_str() {
            "traps" => FailureKind::Traps,
            "errors" => FailureKind::Errors,
            other => {
                return Err(ConfigError::invalid(
                    format!("{path}.count"),
                    format!(
                        "`{other}` is not one of `traps` (traps and timeouts) or `errors` (every error reply)"
                    ),
                ));
            }
        };
    }
    Ok(Some(spec))
}
