//! Extractors that turn axum's rejections into our JSON errors: malformed
//! JSON, unknown fields and wrong types are 400/422, oversized bodies 413,
//! path segments that are not UTF-8 400. Integral floats (`3.0`) are read
//! as integers, as JSON and JSON Schema define them.
//!
//! Messages say what was wrong with the caller's input in our words: the
//! field path and the problem, never a library's type names, line/column
//! positions or prefixes.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::auth::Caller;

/// `axum::Json` with our error body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + Serialize, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    payload_too_large()
                } else {
                    ApiError::bad_request("malformed_json", "the body could not be read as JSON")
                }
            })?;
        let request = Request::from_parts(parts, Body::from(bytes.clone()));
        let value = match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(v)) => v,
            Err(JsonRejection::JsonDataError(e)) => integral_floats_as_integers(&bytes)
                .and_then(|fixed| axum::Json::<T>::from_bytes(&fixed).ok())
                .map(|axum::Json(v)| v)
                .ok_or_else(|| json_rejection(JsonRejection::JsonDataError(e)))?,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        objects_not_arrays(&bytes, &value)?;
        Ok(Json(value))
    }
}

/// serde reads a struct from a JSON array too (`[1, 2]` for `{a, b}`, and
/// `["percent_off", 10]` for a tagged enum); the API documents objects, so
/// an array where the decoded value is an object is refused. Schema-free:
/// the decoded value is written back and compared with what was sent,
/// path by path (a field the value does not write back is not compared).
fn objects_not_arrays<T: Serialize>(bytes: &[u8], decoded: &T) -> Result<(), ApiError> {
    if !bytes.contains(&b'[') {
        return Ok(());
    }
    let (Ok(sent), Ok(back)) = (
        serde_json::from_slice::<serde_json::Value>(bytes),
        serde_json::to_value(decoded),
    ) else {
        return Ok(());
    };
    match array_for_object(&sent, &back, "body") {
        Some(path) => Err(ApiError::unprocessable(
            "invalid_body",
            format!("invalid body: {path} must be an object, not an array"),
        )),
        None => Ok(()),
    }
}

/// The first path where `sent` has an array and `back` an object.
fn array_for_object(
    sent: &serde_json::Value,
    back: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value as V;
    match (sent, back) {
        (V::Array(_), V::Object(_)) => Some(path.to_string()),
        (V::Array(a), V::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| array_for_object(x, y, &format!("{path}[{i}]"))),
        (V::Object(a), V::Object(b)) => a.iter().find_map(|(k, x)| {
            b.get(k)
                .and_then(|y| array_for_object(x, y, &format!("{path}.{k}")))
        }),
        _ => None,
    }
}

/// Largest magnitude below which every integer is exactly an `f64` (2^53).
const EXACT_F64_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// JSON has one number type: `3.0` is the integer 3 (and JSON Schema's
/// `integer` accepts it), but serde reads integer fields only from integer
/// literals. When a body fails to decode, it is tried once more with its
/// integral floats written as integers; `None` if it has none.
fn integral_floats_as_integers(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !rewrite_integral_floats(&mut value) {
        return None;
    }
    serde_json::to_vec(&value).ok()
}

/// Rewrites every integral float in `value`; whether there was one.
fn rewrite_integral_floats(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < EXACT_F64_INTEGERS => {
                // Exact: |f| < 2^53 and integral.
                *value = Value::from(f as i64);
                true
            }
            _ => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| rewrite_integral_floats(v) | any),
        Value::Object(fields) => fields
            .values_mut()
            .fold(false, |any, v| rewrite_integral_floats(v) | any),
        _ => false,
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    match r {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable(
            "invalid_body",
            format!("invalid body: {}", serde_problem(&e.body_text())),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON with content-type: application/json",
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "malformed_json",
            format!(
                "the body is not valid JSON: {}",
                serde_problem(&e.body_text())
            ),
        ),
        _ => ApiError::bad_request("malformed_json", "the body could not be read as JSON"),
    }
}

/// The one 413 answer, for every body over its route's limit.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the body is larger than this route accepts",
    )
}

/// The problem serde found, without axum's prefix and serde's
/// `at line L column C` suffix: `items[0].qty: invalid type: string "x", expected u32`.
fn serde_problem(text: &str) -> String {
    let problem = text.rsplit_once("target type: ").map_or(text, |(_, p)| p);
    let problem = problem
        .rsplit_once("request body as JSON: ")
        .map_or(problem, |(_, p)| p);
    match problem.rfind(" at line ") {
        Some(at) if problem[at..].contains(" column ") => problem[..at].to_string(),
        _ => problem.to_string(),
    }
}

/// `axum::extract::Path` with our error body: a segment that is not UTF-8
/// or does not fit the route's type is a 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r: PathRejection| {
                let message = match &r {
                    PathRejection::FailedToDeserializePathParams(e)
                        if matches!(
                            e.kind(),
                            axum::extract::path::ErrorKind::InvalidUtf8InPathParam { .. }
                        ) =>
                    {
                        "a path segment is not valid UTF-8"
                    }
                    _ => "the path does not name a valid resource",
                };
                ApiError::bad_request("invalid_path", message)
            })
    }
}

/// `axum::extract::Query` with our error body.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r: QueryRejection| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("invalid query: {}", serde_problem(&r.body_text())),
                )
            })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Verified already by the rate limit (`limits::limit`), for writes.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(state.verifier.verify_header(header)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_become_integers() {
        let fixed = integral_floats_as_integers(br#"{"a":[3.0,1.5,-2.0,1e2],"b":7}"#).unwrap();
        assert_eq!(
            String::from_utf8(fixed).unwrap(),
            r#"{"a":[3,1.5,-2,100],"b":7}"#
        );
        assert_eq!(
            integral_floats_as_integers(br#"{"a":[1,1.5],"b":"3.0"}"#),
            None
        );
        assert_eq!(integral_floats_as_integers(b"[1e300]"), None);
    }
}
