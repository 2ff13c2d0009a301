//! Talking to a region node: `POST /v1/fridges/{fridge_id}/telemetry` with
//! a [`SignedBatch`], and the node's answer read leniently.
//!
//! Refusals (401, 403, 400, 413, 422) are answers, not errors: a test that
//! sends a wrong signature wants to look at the 401. [`SimError`] is for
//! what stopped the exchange itself.

use serde::Serialize;
use serde_json::Value;

use crate::encode::EncodeError;
use crate::fridge::SignedBatch;

/// The status a node answers an accepted upload with.
pub const STATUS_ACCEPTED: u16 = 202;

/// Why an upload could not be built or exchanged.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not reach the node: {0}")]
    Http(#[from] reqwest::Error),
    #[error("could not build the batch: {0}")]
    Encode(#[from] EncodeError),
    #[error("the batch would be refused as invalid: {0}")]
    Invalid(#[from] fridge_acl::ParseError),
    #[error("{0}")]
    Demo(String),
}

/// What the node said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub status: u16,
    /// The JSON body (a JSON string holding the text if it was not JSON).
    pub body: Value,
}

/// The counts of a `202`, read leniently: missing numbers are 0, fields
/// this version does not know are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub applied: u64,
    pub duplicate: u64,
    pub stale: u64,
    /// Highest report number the node has from this fridge, if it said.
    pub highest_seq: Option<u64>,
    /// Report number ranges the node is missing (`gaps` or `missing`), as
    /// sent.
    pub gaps: Vec<Value>,
}

impl Answer {
    pub fn is_accepted(&self) -> bool {
        self.status == STATUS_ACCEPTED
    }

    /// The counts, if the upload was accepted.
    pub fn accepted(&self) -> Option<Accepted> {
        if !self.is_accepted() {
            return None;
        }
        let n = |k: &str| self.body.get(k).and_then(Value::as_u64).unwrap_or(0);
        let gaps = ["gaps", "missing"]
            .iter()
            .find_map(|k| self.body.get(*k).and_then(Value::as_array))
            .cloned()
            .unwrap_or_default();
        Some(Accepted {
            applied: n("applied"),
            duplicate: n("duplicate"),
            stale: n("stale"),
            highest_seq: self.body.get("highest_seq").and_then(Value::as_u64),
            gaps,
        })
    }

    /// `error.code` of a refusal (`unauthenticated`, `clock_skew`, …).
    pub fn error_code(&self) -> Option<&str> {
        self.body
            .get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
    }
}

/// Uploads and what the node said of them, summed (over one fridge's run,
/// or many fridges').
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub uploads: u64,
    pub accepted: u64,
    /// Uploads answered with a 4xx (or another non-`202`, non-5xx status).
    pub refused: u64,
    /// Uploads that got no answer or a 5xx: worth sending again.
    pub failed: u64,
    pub reports_sent: u64,
    /// Reports in uploads answered `202`.
    pub reports_accepted: u64,
    pub applied: u64,
    pub duplicate: u64,
    pub stale: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.uploads += other.uploads;
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.failed += other.failed;
        self.reports_sent += other.reports_sent;
        self.reports_accepted += other.reports_accepted;
        self.applied += other.applied;
        self.duplicate += other.duplicate;
        self.stale += other.stale;
    }

    /// Counts one exchange of `reports` reports. Returns `true` if they
    /// were taken or refused for good (forget them), `false` if they should
    /// be sent again (no answer, or a 5xx).
    pub fn record(&mut self, reports: usize, result: &Result<Answer, SimError>) -> bool {
        self.uploads += 1;
        self.reports_sent += reports as u64;
        match result {
            Ok(answer) => {
                if let Some(a) = answer.accepted() {
                    self.accepted += 1;
                    self.reports_accepted += reports as u64;
                    self.applied += a.applied;
                    self.duplicate += a.duplicate;
                    self.stale += a.stale;
                    true
                } else if answer.status >= 500 {
                    self.failed += 1;
                    false
                } else {
                    self.refused += 1;
                    true
                }
            }
            Err(_) => {
                self.failed += 1;
                false
            }
        }
    }
}

/// The telemetry URL of a fridge on a node (`node_url` without a trailing
/// path, e.g. `http://127.0.0.1:8080`).
pub fn telemetry_url(node_url: &str, fridge_id: &str) -> String {
    format!(
        "{}/v1/fridges/{fridge_id}/telemetry",
        node_url.trim_end_matches('/')
    )
}

/// Sends one signed batch and reads the answer.
pub async fn send(
    client: &reqwest::Client,
    node_url: &str,
    batch: &SignedBatch,
) -> Result<Answer, SimError> {
    let mut request = client
        .post(telemetry_url(node_url, &batch.fridge_id))
        .body(batch.body.clone());
    for (name, value) in batch.headers() {
        request = request.header(name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Answer { status, body })
}

/// Registers (or updates) a fridge with its dialect and secret through
/// `PUT /v1/admin/fridges/{fridge_id}` with an admin bearer token: how a
/// load test gets more fridges than the demo district has.
pub async fn register_fridge(
    client: &reqwest::Client,
    node_url: &str,
    admin_token: &str,
    fridge: &crate::fridge::SimFridge,
    (lat, lon): (f64, f64),
) -> Result<Answer, SimError> {
    let spec = serde_json::json!({
        "name": format!("Simulated {}", fridge.id),
        "address": "fridge-sim",
        "lat": lat,
        "lon": lon,
        "vendor": fridge.dialect.as_str(),
        "secret": String::from_utf8_lossy(&fridge.secret),
    });
    let response = client
        .put(format!(
            "{}/v1/admin/fridges/{}",
            node_url.trim_end_matches('/'),
            fridge.id
        ))
        .bearer_auth(admin_token)
        .json(&spec)
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_accepted_answers_leniently() {
        let documented = Answer {
            status: 202,
            body: json!({"applied":3,"duplicate":1,"stale":0,"highest_seq":45,
                         "missing":[{"first":30,"last":31}],"clock_offset_secs":-2}),
        };
        let a = documented.accepted().unwrap_or_default();
        assert_eq!((a.applied, a.duplicate, a.stale), (3, 1, 0));
        assert_eq!(a.highest_seq, Some(45));
        assert_eq!(a.gaps, vec![json!({"first":30,"last":31})]);

        let other = Answer {
            status: 202,
            body: json!({"applied":1,"gaps":[[2,3]],"new_field":true}),
        };
        let a = other.accepted().unwrap_or_default();
        assert_eq!((a.applied, a.duplicate, a.highest_seq), (1, 0, None));
        assert_eq!(a.gaps, vec![json!([2, 3])]);
    }

    #[test]
    fn reads_refusals() {
        let refused = Answer {
            status: 401,
            body: json!({"error":{"code":"clock_skew","message":"…"}}),
        };
        assert!(refused.accepted().is_none());
        assert_eq!(refused.error_code(), Some("clock_skew"));
        let text = Answer {
            status: 502,
            body: Value::String("bad gateway".into()),
        };
        assert_eq!(text.error_code(), None);
    }

    #[test]
    fn url_ignores_a_trailing_slash() {
        assert_eq!(
            telemetry_url("http://127.0.0.1:8080/", "f-1"),
            "http://127.0.0.1:8080/v1/fridges/f-1/telemetry"
        );
    }

    #[test]
    fn totals_keep_what_failed_and_drop_what_was_refused() {
        let mut t = Tally::default();
        let ok = Ok(Answer {
            status: 202,
            body: json!({"applied":2,"duplicate":1,"stale":0}),
        });
        assert!(t.record(3, &ok));
        let refused = Ok(Answer {
            status: 401,
            body: json!({"error":{"code":"unauthenticated","message":"x"}}),
        });
        assert!(t.record(1, &refused));
        let unavailable = Ok(Answer {
            status: 503,
            body: json!(null),
        });
        assert!(!t.record(1, &unavailable));
        assert_eq!(
            t,
            Tally {
                uploads: 3,
                accepted: 1,
                refused: 1,
                failed: 1,
                reports_sent: 5,
                reports_accepted: 3,
                applied: 2,
                duplicate: 1,
                stale: 0,
            }
        );
    }
}
