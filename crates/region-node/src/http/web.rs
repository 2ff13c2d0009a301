//! The web apps: the customer app (`/`), the operations dashboard (`/ops`)
//! and the kitchen view (`/kitchen`), plus their scripts and styles under
//! `/web/`.
//!
//! The files live in `crates/region-node/web/` and are embedded in the
//! binary when it is built (`rust-embed` with `debug-embed`, so a debug
//! build serves the same bytes as a release build and nothing is read from
//! disk at run time). There is no build step and no framework: plain HTML,
//! CSS and JavaScript modules that talk to the same `/v1` API and WebSocket
//! as any other app. Nothing is fetched from elsewhere (no CDN, no map
//! tiles), which the Content-Security-Policy below also enforces, so the
//! pages work on a district's own network with no way out.
//!
//! A page gets its token from the URL fragment (`/ops#token=…`), which a
//! browser never sends to a server, so tokens stay out of request lines and
//! access logs; the page keeps it in `sessionStorage` for that tab only.
//!
//! Architecture Invariant: these handlers serve bytes and nothing else; a
//! page can do only what its token lets it do through `/v1`.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::error::ApiError;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Only this origin: scripts, styles, images, and the API and WebSocket
/// (`'self'` covers `ws:` to the same host). No inline script, no eval.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn customer(headers: HeaderMap) -> Response {
    page("index.html", &headers)
}

pub async fn ops(headers: HeaderMap) -> Response {
    page("ops.html", &headers)
}

pub async fn kitchen(headers: HeaderMap) -> Response {
    page("kitchen.html", &headers)
}

/// `GET /web/{file}`: a script, style sheet or image of the pages.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    // Pages are never served under `/web/` (they have their own routes), and
    // the embedded set has no directories, so a name with a slash is unknown.
    if file.ends_with(".html") || file.contains('/') {
        return ApiError::not_found("not_found", "no such file").into_response();
    }
    page(&file, &headers)
}

/// Answers with the embedded file, or 304 when the browser already has it.
/// `no-cache` makes the browser ask each time (an upgraded node serves new
/// pages at once) while the ETag keeps the answer to a few bytes.
fn page(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(name) else {
        return ApiError::not_found("not_found", "no such file").into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(name))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn etag(sha256: &[u8; 32]) -> String {
    let hex: String = sha256[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_embedded() {
        for name in [
            "index.html",
            "ops.html",
            "kitchen.html",
            "larder.js",
            "app.css",
        ] {
            assert!(Assets::get(name).is_some(), "{name} is not embedded");
        }
    }

    #[test]
    fn pages_load_nothing_from_elsewhere() {
        for name in Assets::iter() {
            let file = Assets::get(&name).expect("listed file");
            // The SVG namespace is a name, not a place anything is fetched from.
            let text = String::from_utf8_lossy(&file.data).replace("http://www.w3.org/", "");
            for outside in ["http://", "https://", "//cdn", "<script>"] {
                assert!(
                    !text.contains(outside),
                    "{name} mentions {outside}: pages load only from this node"
                );
            }
        }
    }
}
