//! Webhook endpoints: what an admin registers (`WebhookSpec`, validated
//! here so every adapter applies the same rules) and the events that record
//! it in the district log (`WebhookEvent`).
//!
//! A registration is district data acknowledged by a 2xx, so it lives in the
//! log like a campaign. The deliveries themselves do not: they are the
//! node's outbox (`region-node`'s `webhooks` module), derived from the log.

use serde::{Deserialize, Serialize};

use crate::{StreamId, WebhookId};

/// Shortest accepted signing secret, in bytes: 128 bits of hex or base64
/// at the least, so it cannot be guessed from a few signatures.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest accepted signing secret, in bytes.
pub const MAX_SECRET_BYTES: usize = 128;
/// Longest accepted endpoint URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// The event families an endpoint can subscribe to. Append-only (postcard
/// writes the variant index into the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFamily {
    /// Orders placed, cancelled, paid, refused, refunded, picked up,
    /// unclaimed, flagged.
    Orders,
    /// Stock levels and movements per fridge and meal.
    Stock,
    /// Fridge registrations, status, quarantines, door anomalies.
    Fridges,
    /// Subscription plans, their charges and the orders made for them.
    Plans,
    /// The kitchens' calendar and production steps of plan orders.
    Kitchens,
}

impl WebhookFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFamily::Orders => "orders",
            WebhookFamily::Stock => "stock",
            WebhookFamily::Fridges => "fridges",
            WebhookFamily::Plans => "plans",
            WebhookFamily::Kitchens => "kitchens",
        }
    }
}

/// What an admin sends to register an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// `http://` or `https://` URL deliveries are POSTed to ([`url_ok`]).
    pub url: String,
    /// At least one family; duplicates are ignored.
    pub families: Vec<WebhookFamily>,
    /// The HMAC-SHA256 key deliveries are signed with (printable ASCII,
    /// [`MIN_SECRET_BYTES`]..=[`MAX_SECRET_BYTES`]). Never shown again.
    pub secret: String,
}

/// Why a [`WebhookSpec`] is refused; the texts are the API's 422 messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSpecError {
    #[error("url must be an http:// or https:// URL with a host name or IPv4 address, an optional port and path, at most {MAX_URL_BYTES} bytes")]
    Url,
    #[error("families must name at least one of orders, stock, fridges, plans, kitchens")]
    NoFamilies,
    #[error("secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} printable ASCII characters without spaces")]
    Secret,
}

impl WebhookSpec {
    /// Checks the spec and returns it with its families sorted and unique.
    pub fn validated(mut self) -> Result<Self, WebhookSpecError> {
        if !url_ok(&self.url) {
            return Err(WebhookSpecError::Url);
        }
        self.families.sort();
        self.families.dedup();
        if self.families.is_empty() {
            return Err(WebhookSpecError::NoFamilies);
        }
        let len = self.secret.len();
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&len)
            || !self.secret.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(WebhookSpecError::Secret);
        }
        Ok(self)
    }
}

/// The URLs accepted, exactly as [`URL_PATTERN`] states (the OpenAPI
/// document carries the same pattern): `http` or `https`; a dotted IPv4
/// address or a host name whose labels are letters, digits and single
/// inner hyphens (no `xn--`: no IDNA surprises) and whose last label
/// starts with a letter (so it is never read as a number); an optional
/// port 1..=65535; an optional path and query of URL-safe characters.
/// Narrower than RFC 3986 on purpose: everything it accepts, every HTTP
/// client parses the same way, so a registered URL never fails later.
pub fn url_ok(url: &str) -> bool {
    if url.len() > MAX_URL_BYTES {
        return false;
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    (ipv4_ok(host) || hostname_ok(host))
        && port.is_none_or(port_ok)
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@%/?-".contains(&b))
}

/// The pattern of [`url_ok`], for the OpenAPI document.
pub const URL_PATTERN: &str = "^https?://((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|([A-Za-z0-9]+(-[A-Za-z0-9]+)*\\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*)(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$";

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn port_ok(port: &str) -> bool {
    digits(port)
        && port.len() <= 5
        && !port.starts_with('0')
        && port.parse::<u32>().is_ok_and(|p| p <= 65_535)
}

fn ipv4_ok(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            digits(o)
                && o.len() <= 3
                && (o.len() == 1 || !o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && !label.contains("--")
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn hostname_ok(host: &str) -> bool {
    host.split('.').all(label_ok)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// Webhook facts in the district log. Append-only, like [`crate::Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// An endpoint was registered; it receives the events of its families
    /// committed after this one.
    EndpointRegistered {
        endpoint_id: WebhookId,
        url: String,
        families: Vec<WebhookFamily>,
        /// The signing key. Kept in the log like a fridge's secret; never
        /// served back (views show its last four characters).
        secret: String,
    },
    /// An endpoint was disabled: nothing committed after this is queued for
    /// it, and what was still pending is not sent any more.
    EndpointDisabled { endpoint_id: WebhookId },
}

impl WebhookEvent {
    /// Short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WebhookEvent::EndpointRegistered { .. } => "WebhookEndpointRegistered",
            WebhookEvent::EndpointDisabled { .. } => "WebhookEndpointDisabled",
        }
    }

    pub fn stream(&self) -> StreamId {
        match self {
            WebhookEvent::EndpointRegistered { endpoint_id, .. }
            | WebhookEvent::EndpointDisabled { endpoint_id } => {
                StreamId::Webhook(endpoint_id.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, secret: &str) -> WebhookSpec {
        WebhookSpec {
            url: url.into(),
            families: vec![
                WebhookFamily::Stock,
                WebhookFamily::Orders,
                WebhookFamily::Stock,
            ],
            secret: secret.into(),
        }
    }

    #[test]
    fn a_good_spec_is_kept_with_its_families_sorted_and_unique() {
        let ok = spec("https://example.com/hooks?x=1", "0123456789abcdef")
            .validated()
            .unwrap();
        assert_eq!(
            ok.families,
            vec![WebhookFamily::Orders, WebhookFamily::Stock]
        );
        for url in [
            "http://127.0.0.1:9/x",
            "https://a",
            "https://erp-1.example.com:65535/hooks/larder?tenant=7&x=%20",
            "http://1.example.b2/",
        ] {
            assert!(spec(url, "0123456789abcdef").validated().is_ok(), "{url}");
        }
    }

    proptest::proptest! {
        /// Whatever the documented pattern (the OpenAPI document's) accepts,
        /// the node accepts: schemathesis sends such URLs and expects a 2xx.
        #[test]
        fn every_url_the_pattern_accepts_is_accepted(
            url in proptest::string::string_regex(
                URL_PATTERN.trim_start_matches('^').trim_end_matches('$'),
            )
            .unwrap()
        ) {
            proptest::prop_assert!(url.len() > MAX_URL_BYTES || url_ok(&url), "{}", url);
        }
    }

    #[test]
    fn bad_urls_and_secrets_are_refused() {
        let secret = "0123456789abcdef";
        for url in [
            "",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://:80/",
            "example.com",
            "https://exa mple.com",
            "http://999.1.1.1/",
            "http://1.2.3/",
            "http://a.1/",
            "http://xn--zz.com/",
            "http://a-.com/",
            "http://a..com/",
            "http://example.com:0/",
            "http://example.com:65536/",
            "http://example.com#frag",
            "http://example.com?q=1",
            "HTTP://example.com/",
        ] {
            assert_eq!(
                spec(url, secret).validated(),
                Err(WebhookSpecError::Url),
                "{url}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(spec(&long, secret).validated(), Err(WebhookSpecError::Url));
        for secret in [
            "short",
            "0123456789abcde ",
            &"x".repeat(MAX_SECRET_BYTES + 1),
        ] {
            assert_eq!(
                spec("https://example.com", secret).validated(),
                Err(WebhookSpecError::Secret)
            );
        }
        let mut none = spec("https://example.com", secret);
        none.families.clear();
        assert_eq!(none.validated(), Err(WebhookSpecError::NoFamilies));
    }
}
