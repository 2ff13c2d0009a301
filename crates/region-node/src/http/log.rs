//! `GET /v1/admin/log?after=SEQ&limit=N`: the event log's records, for
//! `region-node backup` and `region-node export`.
//!
//! The body is the records exactly as the log stores them (codec records,
//! schema version first), each in a `storage::archive` frame with the
//! 8-byte big-endian seq as its key. Raw records rather than JSON because a
//! backup must restore the very bytes the node wrote: a JSON round trip
//! would make a restore depend on every event's JSON form being lossless,
//! and would triple the size. Export decodes them on the client side.
//!
//! Only durable records are served: the writer applies a batch to sled
//! before its fsync and publishes the new snapshot after it, so the
//! snapshot's `last_seq` (sent as `Larder-Durable-Seq`) is the bound.

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::Query;
use super::AppState;
use crate::auth::{Caller, Role};

/// Records per page when the request names no `limit`.
pub const DEFAULT_LOG_PAGE_RECORDS: usize = 1_000;
/// Most records per page: a page is read and held in memory whole (events
/// are a few hundred bytes, so a few MB at most).
pub const MAX_LOG_PAGE_RECORDS: usize = 10_000;
/// The seq of the node's last durable event when the page was read.
pub const DURABLE_SEQ_HEADER: HeaderName = HeaderName::from_static("larder-durable-seq");
pub const DISTRICT_HEADER: HeaderName = HeaderName::from_static("larder-district-id");
/// `protocol::codec::LOG_SCHEMA_VERSION` of the node that served the page.
pub const SCHEMA_HEADER: HeaderName = HeaderName::from_static("larder-log-schema-version");
pub const LOG_MEDIA_TYPE: &str = "application/octet-stream";

#[derive(Deserialize)]
pub struct LogQuery {
    /// Records with a seq above this one (0: from the start).
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

/// `GET /v1/admin/log`: admin only.
pub async fn records(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(DEFAULT_LOG_PAGE_RECORDS);
    if !(1..=MAX_LOG_PAGE_RECORDS).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid",
            format!("limit must be 1 to {MAX_LOG_PAGE_RECORDS} records"),
        ));
    }
    let durable = app.district.state().last_seq();
    let reader = app.log.clone();
    let read = tokio::task::spawn_blocking(move || reader.records(q.after, durable, limit)).await;
    let unavailable =
        |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m);
    let records = read
        .map_err(|e| unavailable(e.to_string()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let mut body = Vec::new();
    for (seq, record) in &records {
        storage::archive::write_frame(&mut body, &seq.to_be_bytes(), record);
    }
    let district =
        HeaderValue::from_str(&app.config.district_id).map_err(|e| unavailable(e.to_string()))?;
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(LOG_MEDIA_TYPE),
        ),
        (DURABLE_SEQ_HEADER, HeaderValue::from(durable)),
        (DISTRICT_HEADER, district),
        (
            SCHEMA_HEADER,
            HeaderValue::from(protocol::codec::LOG_SCHEMA_VERSION),
        ),
    ];
    Ok((headers, body).into_response())
}
