//! Names in a topology (cluster, nodes, modules): what they may be made of.

use super::ConfigError;

/// The name the master goes by on node links (a node may not take it).
pub const MASTER: &str = "master";

/// Checks that `name` (at `path` in the topology) is a valid name.
pub(super) fn check_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let ok = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!(
                "`{name}` is not a valid name (lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 64 characters)"
            ),
        ))
    }
}
