//! A listener's session keys: `single_login` and `resume`.

use std::time::Duration;

use super::raw::RawListener;
use super::units::parse_duration;
use super::{ConfigError, ResumeSettings, SessionSettings};

/// The session settings of listener `path`.
pub(super) fn session_settings(
    path: &str,
    raw: &RawListener,
) -> Result<SessionSettings, ConfigError> {
    let mut settings = SessionSettings::default();
    if let Some(single) = raw.single_login {
        settings.single_login = single;
    }
    if let Some(r) = &raw.resume {
        let mut resume = ResumeSettings::default();
        if let Some(text) = &r.grace {
            let p = format!("{path}.resume.grace");
            let grace = parse_duration(text).map_err(|m| ConfigError::invalid(&p, m))?;
            if grace < Duration::from_millis(100) || grace > Duration::from_secs(86_400) {
                return Err(ConfigError::invalid(
                    p,
                    format!("{grace:?} is out of range (100ms to 86400s)"),
                ));
            }
            resume.grace = grace;
        }
        if let Some(buffer) = r.buffer {
            if buffer > 1_000_000 {
                return Err(ConfigError::invalid(
                    format!("{path}.resume.buffer"),
                    format!("{buffer} is out of range (0 to 1000000)"),
                ));
            }
            resume.buffer = buffer as usize;
        }
        settings.resume = Some(resume);
    }
    Ok(settings)
}
