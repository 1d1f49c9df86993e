//! A WebSocket listener's `origins:` allow-list: the browser origins whose pages may connect.

use super::raw::RawListener;
use super::{ConfigError, ListenerKind};

/// The allow-list of listener `path` (`None`: any origin), each entry normalized to lower case
/// `scheme://host[:port]`.
pub(super) fn origins(
    path: &str,
    kind: ListenerKind,
    raw: &RawListener,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = &raw.origins else {
        return Ok(None);
    };
    let p = format!("{path}.origins");
    if kind != ListenerKind::Ws {
        return Err(ConfigError::invalid(
            p,
            "only a `ws:` listener has an `Origin` allow-list (browsers send it with the upgrade)",
        ));
    }
    if list.is_empty() {
        return Err(ConfigError::invalid(
            p,
            "list at least one origin, or leave `origins` out to accept every origin",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, origin)| {
            check(origin)
                .map(|()| origin.to_ascii_lowercase())
                .map_err(|why| ConfigError::invalid(format!("{p}[{i}]"), why))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Whether `origin` is a serialized origin (`http(s)://host[:port]`, nothing after it).
fn check(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("`{origin}` is not an origin: it starts with http:// or https://")
        })?;
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(port) = port.filter(|p| p.parse::<u16>().is_err()) {
        return Err(format!("`{origin}`: `{port}` is not a port"));
    }
    if host.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "`{origin}` is not an origin: scheme://host[:port], no path (e.g. https://game.example)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn origins_are_scheme_host_and_port() {
        for ok in [
            "http://127.0.0.1:8080",
            "https://game.example",
            "http://[::1]:9",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "game.example",
            "ftp://x",
            "https://x/",
            "https://x:y",
            "http://",
            "https://a b",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
