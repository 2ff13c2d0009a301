//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) for the answers the
//! node keeps precompressed (the catalog).
//!
//! The coding depends on the request alone, never on the body: gzip or br
//! is sent whenever the client accepts it with a weight above 0 (ties go to
//! br, then gzip, then identity), so the ETag of the answer can be chosen
//! before the body is looked up. A coding the client does not name is not
//! acceptable unless `*` names it; identity is always possible, and is what
//! a client gets that accepts neither compressed coding.

use axum::http::{header, HeaderMap};

use crate::catalog_cache::Coding;

/// The weights the header gives each coding the node can send (0 to 1000,
/// as qvalues in thousandths); `None` where the header does not name it.
#[derive(Debug, Default, Clone, Copy)]
struct Weights {
    gzip: Option<u16>,
    br: Option<u16>,
    identity: Option<u16>,
    any: Option<u16>,
}

/// The coding to send for a request with `headers`.
pub fn negotiate(headers: &HeaderMap) -> Coding {
    let mut w = Weights::default();
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let Some(q) = weight(parts) else { continue };
            let slot = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut w.gzip
            } else if name.eq_ignore_ascii_case("br") {
                &mut w.br
            } else if name.eq_ignore_ascii_case("identity") {
                &mut w.identity
            } else if name == "*" {
                &mut w.any
            } else {
                continue;
            };
            // Named twice: the higher weight counts.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    let br = w.br.or(w.any).unwrap_or(0);
    let gzip = w.gzip.or(w.any).unwrap_or(0);
    // Identity only competes when the client weighs it; unnamed, any
    // accepted compressed coding is preferred.
    let identity = w.identity.unwrap_or(0);
    if br > 0 && br >= gzip && br >= identity {
        Coding::Br
    } else if gzip > 0 && gzip >= identity {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// An item's weight from its parameters: 1000 without `q`, `None` (the
/// item is ignored) for a malformed one.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut q = 1000;
    for param in params {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = qvalue(value.trim())?;
        }
    }
    Some(q)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn qvalue(s: &str) -> Option<u16> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .zip([100, 10, 1])
        .map(|(digit, place)| u16::from(digit - b'0') * place)
        .sum::<u16>();
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn pick(values: &[&str]) -> Coding {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        negotiate(&h)
    }

    #[test]
    fn without_the_header_the_answer_is_identity() {
        assert_eq!(pick(&[]), Coding::Identity);
        assert_eq!(pick(&[""]), Coding::Identity);
        assert_eq!(pick(&["deflate, compress"]), Coding::Identity);
    }

    #[test]
    fn accepted_codings_are_preferred_br_first() {
        assert_eq!(pick(&["gzip"]), Coding::Gzip);
        assert_eq!(pick(&["x-gzip"]), Coding::Gzip);
        assert_eq!(pick(&["gzip, deflate, br"]), Coding::Br);
        assert_eq!(pick(&["GZIP;Q=0.5"]), Coding::Gzip);
        assert_eq!(pick(&["*"]), Coding::Br);
        assert_eq!(pick(&["deflate", "gzip"]), Coding::Gzip, "two header lines");
    }

    #[test]
    fn weights_decide_and_zero_refuses() {
        assert_eq!(pick(&["gzip;q=0"]), Coding::Identity);
        assert_eq!(pick(&["gzip ; q=0.000"]), Coding::Identity);
        assert_eq!(pick(&["br;q=0, gzip"]), Coding::Gzip);
        assert_eq!(pick(&["br;q=0.4, gzip;q=0.8"]), Coding::Gzip);
        assert_eq!(pick(&["*;q=0.5, gzip;q=0"]), Coding::Br);
        assert_eq!(pick(&["*, br;q=0, gzip;q=0"]), Coding::Identity);
        assert_eq!(pick(&["identity, gzip;q=0.5"]), Coding::Identity);
        assert_eq!(pick(&["identity;q=0.5, gzip"]), Coding::Gzip);
    }

    #[test]
    fn malformed_items_are_ignored() {
        assert_eq!(pick(&["gzip;q=2"]), Coding::Identity);
        assert_eq!(pick(&["gzip;q=0.1234"]), Coding::Identity);
        assert_eq!(pick(&["gzip;q=abc, br;q"]), Coding::Identity);
        assert_eq!(pick(&["gzip;q=1.5, br;q=0.1"]), Coding::Br);
        assert_eq!(pick(&[";;;,,, gzip"]), Coding::Gzip);
    }
}
