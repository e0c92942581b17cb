//! Endpoints and URLs: what a node address may look like, and the few URL
//! operations the client needs.
//!
//! Why a module of its own: an endpoint list comes from people (flags,
//! environment variables, config files), so it is checked once, up front,
//! with a message that says what is expected; everything after works on
//! the normalised form (`http://host:port`, `https://host:port`, or
//! `host:port` until [`with_scheme`] decides). Redirects are followed by the
//! client itself, so `Location` headers are resolved here too.

use std::fmt::Write as _;

/// Why a string is not an endpoint. Each message names the endpoint and
/// what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Nothing was given.
    #[error("empty endpoint: give host:port, http://host:port or https://host:port")]
    Empty,
    /// A scheme other than `http` or `https`.
    #[error(
        "{endpoint}: only http:// and https:// endpoints are supported (give host:port, \
         http://host:port or https://host:port)"
    )]
    UnsupportedScheme {
        /// The endpoint as given (trimmed).
        endpoint: String,
    },
    /// A path, query, fragment or user part.
    #[error("{endpoint}: an endpoint is host:port or http(s)://host:port, without path or user")]
    PathOrUser {
        /// The endpoint as given (trimmed).
        endpoint: String,
    },
    /// `[` without its `]`.
    #[error("{endpoint}: unclosed '[' in an IPv6 address")]
    UnclosedBracket {
        /// The endpoint as given (trimmed).
        endpoint: String,
    },
    /// An IPv6 address without brackets.
    #[error("{endpoint}: write an IPv6 address in brackets, e.g. [::1]:8081")]
    UnbracketedIpv6 {
        /// The endpoint as given (trimmed).
        endpoint: String,
    },
    /// The host part is empty or has characters no host name has.
    #[error("{endpoint}: not a host name or address")]
    BadHost {
        /// The endpoint as given (trimmed).
        endpoint: String,
    },
    /// No `:port`.
    #[error("{endpoint}: missing port (e.g. {host}:8081)")]
    MissingPort {
        /// The endpoint as given (trimmed).
        endpoint: String,
        /// Its host part.
        host: String,
    },
    /// A port that is not 1–65535.
    #[error("{endpoint}: port must be 1-65535")]
    BadPort {
        /// The endpoint as given (trimmed).
        endpoint: String,
    },
}

/// Parses one endpoint into `http://host:port`, `https://host:port` or,
/// without a scheme, `host:port` (no trailing slash); [`with_scheme`] gives
/// the last its scheme once the TLS settings are known.
///
/// Accepts `host:port`, `http(s)://host:port` and `http(s)://host:port/`;
/// `[v6addr]:port` too. Anything else (another scheme, a path, no port) is
/// refused with a message saying what is expected.
pub fn parse_endpoint(raw: &str) -> Result<String, EndpointError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(EndpointError::Empty);
    }
    let endpoint = || s.to_string();
    let (scheme, rest) = split_scheme(s)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(EndpointError::PathOrUser {
            endpoint: endpoint(),
        });
    }
    let (host, port) = split_host_port(s, rest)?;
    let valid_host = host.len() > 2 && host.starts_with('[')
        || !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    if !valid_host {
        return Err(EndpointError::BadHost {
            endpoint: endpoint(),
        });
    }
    let Some(port) = port else {
        return Err(EndpointError::MissingPort {
            endpoint: endpoint(),
            host: host.to_string(),
        });
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(match scheme {
            Some(scheme) => format!("{scheme}://{host}:{p}"),
            None => format!("{host}:{p}"),
        }),
        _ => Err(EndpointError::BadPort {
            endpoint: endpoint(),
        }),
    }
}

/// `(scheme, rest)`: the scheme in lower case if one is given.
fn split_scheme(s: &str) -> Result<(Option<&'static str>, &str), EndpointError> {
    match s.find("://") {
        Some(i) if s[..i].eq_ignore_ascii_case("http") => Ok((Some("http"), &s[i + 3..])),
        Some(i) if s[..i].eq_ignore_ascii_case("https") => Ok((Some("https"), &s[i + 3..])),
        Some(_) => Err(EndpointError::UnsupportedScheme {
            endpoint: s.to_string(),
        }),
        None => Ok((None, s)),
    }
}

/// `(host, port)` of `rest` (the endpoint `s` without its scheme); the host
/// keeps an IPv6 address's brackets.
fn split_host_port<'a>(
    s: &str,
    rest: &'a str,
) -> Result<(&'a str, Option<&'a str>), EndpointError> {
    if rest.starts_with('[') {
        let Some(end) = rest.find(']') else {
            return Err(EndpointError::UnclosedBracket {
                endpoint: s.to_string(),
            });
        };
        return Ok((&rest[..=end], rest[end + 1..].strip_prefix(':')));
    }
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h, Some(p))),
        Some(_) => Err(EndpointError::UnbracketedIpv6 {
            endpoint: s.to_string(),
        }),
        None => Ok((rest, None)),
    }
}

/// A parsed endpoint with its scheme: `host:port` becomes `https://` when
/// `tls` (a CA was given), `http://` otherwise; an explicit scheme stays.
pub fn with_scheme(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

/// Whether `url` starts with `https://` (any case).
pub(crate) fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

/// Whether `url` starts with `http://` (any case).
pub(crate) fn is_http(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
}

/// The `host:port` of a URL (after the scheme, before the path).
pub(crate) fn authority(url: &str) -> &str {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    rest.split('/').next().unwrap_or(rest)
}

/// Resolves a `Location` header against the URL that sent it.
pub fn resolve_location(current: &str, location: &str) -> String {
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = current
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| current[start..].find('/').map(|j| start + j))
        .unwrap_or(current.len());
    let origin = &current[..origin_end];
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        format!("{origin}/{location}")
    }
}

/// The `scheme://host:port` part of a URL.
pub fn origin(url: &str) -> String {
    resolve_location(url, "/").trim_end_matches('/').to_string()
}

/// Percent-encodes one URL path segment or query value (everything but
/// RFC 3986 unreserved characters).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_host_port_and_urls() {
        assert_eq!(parse_endpoint("127.0.0.1:8081").unwrap(), "127.0.0.1:8081");
        assert_eq!(
            with_scheme(&parse_endpoint("127.0.0.1:8081").unwrap(), false),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            with_scheme(&parse_endpoint("127.0.0.1:8081").unwrap(), true),
            "https://127.0.0.1:8081"
        );
        assert_eq!(
            parse_endpoint("HTTPS://node-1.example:8443/").unwrap(),
            "https://node-1.example:8443"
        );
        // An explicit scheme wins over --cacert either way.
        assert_eq!(with_scheme("http://n1:1", true), "http://n1:1");
        assert_eq!(with_scheme("https://n1:1", false), "https://n1:1");
        assert_eq!(
            parse_endpoint("http://node-2:8082").unwrap(),
            "http://node-2:8082"
        );
        assert_eq!(
            parse_endpoint(" HTTP://n3:8083/ ").unwrap(),
            "http://n3:8083"
        );
        assert_eq!(
            with_scheme(&parse_endpoint("[::1]:8081").unwrap(), false),
            "http://[::1]:8081"
        );
    }

    #[test]
    fn endpoints_refuse_what_they_cannot_reach() {
        for bad in [
            "",
            "localhost",
            "ftp://n1:8081",
            "https://n1",
            "https://n1:8081/v1",
            "n1:0",
            "n1:99999",
            "n1:x",
            "http://n1:8081/v1",
            "::1:8081",
            "[::1:8081",
            "user@n1:8081",
            ":8081",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_endpoint("localhost")
            .unwrap_err()
            .to_string()
            .contains("missing port"));
    }

    #[test]
    fn locations_resolve() {
        assert_eq!(
            resolve_location(
                "http://a:1/v1/commands?acks=all",
                "http://b:2/v1/commands?acks=all"
            ),
            "http://b:2/v1/commands?acks=all"
        );
        assert_eq!(
            resolve_location("http://a:1/v1/commands", "/v1/x"),
            "http://a:1/v1/x"
        );
        assert_eq!(resolve_location("http://a:1", "/"), "http://a:1/");
        assert_eq!(origin("http://a:1/v1/topics?x=1"), "http://a:1");
        assert_eq!(authority("https://a:1/v1/x"), "a:1");
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("orders.v2_x-y"), "orders.v2_x-y");
        assert_eq!(encode_component("a b/c?"), "a%20b%2Fc%3F");
    }
}
