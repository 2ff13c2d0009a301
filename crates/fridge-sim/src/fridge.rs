//! One simulated fridge: its identity, dialect, signing secret and report
//! counter, and the signed uploads it builds.
//!
//! This module owns *what a fridge says*: numbered reports, batches in the
//! fridge's dialect ([`mod@crate::encode`]), the HMAC headers
//! ([`fridge_acl::sign`]), and the deliberate misbehaviour tests need (a
//! wrong secret, a skewed or stale clock, another fridge's id in the body).
//! It does no IO; [`crate::client`] sends what it builds.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use fridge_acl::auth::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use fridge_acl::{
    Batch, Dialect, DoorActor, DoorSession, FridgeId, MealId, ParseError, Report, ReportBody, Scan,
};

use crate::encode::{encode, EncodeError, MILLI_C_PER_DEGREE, MILLI_C_PER_TENTH};

/// Units per meal, by meal id.
pub type MealCounts = BTreeMap<MealId, u32>;

/// A fridge as the simulator plays it. Its `Debug` leaves the secret out,
/// so logging a fridge never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct SimFridge {
    pub id: FridgeId,
    pub dialect: Dialect,
    pub secret: Vec<u8>,
    /// The last report number used (0 before the first report): the next
    /// report is `seq + 1`. Real firmware keeps this in flash.
    pub seq: u64,
}

/// Largest clock offset or timestamp age the simulator applies, in seconds
/// (about 100 years): larger values are clamped, so date arithmetic cannot
/// overflow. Anything past `MAX_SKEW_SECS` is refused by the node anyway.
pub const MAX_SIM_CLOCK_OFFSET_SECS: i64 = 100 * 366 * 24 * 3600;

impl fmt::Debug for SimFridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFridge")
            .field("id", &self.id)
            .field("dialect", &self.dialect)
            .field("secret", &"<redacted>")
            .field("seq", &self.seq)
            .finish()
    }
}

/// How to sign and address an upload. The default is an honest fridge with
/// a correct clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignOptions {
    /// The fridge clock minus true time, in seconds: moves the body's
    /// `batch_ts` and the signed timestamp together, as a drifting RTC does.
    pub clock_skew_secs: i64,
    /// Signs with a header timestamp this many seconds older than the
    /// fridge clock (an upload held back, or a captured one replayed).
    pub stale_timestamp_secs: i64,
    /// Signs with this secret instead of the fridge's.
    pub wrong_secret: Option<Vec<u8>>,
    /// Names this fridge in the body instead of the fridge's own id (the
    /// URL and the secret stay the fridge's).
    pub fridge_in_body: Option<FridgeId>,
}

/// One upload, ready to send: the exact bytes and the headers that sign them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBatch {
    /// The fridge in the URL (`/v1/fridges/{fridge_id}/telemetry`).
    pub fridge_id: FridgeId,
    pub dialect: Dialect,
    pub body: Bytes,
    pub content_type: &'static str,
    /// `x-larder-timestamp`: Unix seconds, as signed.
    pub timestamp: i64,
    /// `x-larder-signature`: lowercase hex HMAC-SHA256.
    pub signature: String,
    /// Report numbers in the body, in body order.
    pub seqs: Vec<u64>,
}

impl SignedBatch {
    /// `Content-Type`, `x-larder-timestamp` and `x-larder-signature`.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("content-type", self.content_type.to_string()),
            (TIMESTAMP_HEADER, self.timestamp.to_string()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ]
    }

    /// Number of reports (readings) in the body.
    pub fn report_count(&self) -> usize {
        self.seqs.len()
    }
}

/// A temperature the simulator cannot send.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{celsius} °C is not a finite temperature the probe could read")]
pub struct BadTemperature {
    pub celsius: f64,
}

/// Degrees Celsius to milli-degrees, rounded to the 0.1 °C a fridge probe
/// resolves (and all that `coldline-lines` carries). Out-of-range values are
/// kept, so a test can send them; only non-finite or absurd ones are refused.
pub fn milli_c_from_celsius(celsius: f64) -> Result<i32, BadTemperature> {
    let tenths = (celsius * f64::from(MILLI_C_PER_DEGREE / MILLI_C_PER_TENTH)).round();
    // Bound before the cast: `as` saturates silently.
    const MAX_ABS_TENTHS: f64 = 1.0e6;
    if !tenths.is_finite() || tenths.abs() > MAX_ABS_TENTHS {
        return Err(BadTemperature { celsius });
    }
    Ok(tenths as i32 * MILLI_C_PER_TENTH)
}

impl SimFridge {
    /// A fridge whose next report is number 1.
    pub fn new(id: FridgeId, dialect: Dialect, secret: impl Into<Vec<u8>>) -> Self {
        SimFridge {
            id,
            dialect,
            secret: secret.into(),
            seq: 0,
        }
    }

    /// The next report number, consumed.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn report(&mut self, at: DateTime<Utc>, body: ReportBody) -> Report {
        Report {
            seq: self.next_seq(),
            at: at.trunc_subsecs(0),
            body,
        }
    }

    /// An inventory scan: absolute units per meal (unlisted meals are 0).
    pub fn scan_report(&mut self, at: DateTime<Utc>, counts: &MealCounts) -> Report {
        self.report(
            at,
            ReportBody::Scan(Scan {
                counts: counts.clone(),
                expired: BTreeMap::new(),
            }),
        )
    }

    /// A door session by `who`, with the units taken and added.
    pub fn door_report(
        &mut self,
        at: DateTime<Utc>,
        who: DoorActor,
        taken: &MealCounts,
        added: &MealCounts,
    ) -> Report {
        self.report(
            at,
            ReportBody::Door(DoorSession {
                who,
                taken: taken.clone(),
                added: added.clone(),
            }),
        )
    }

    /// One cabinet temperature sample, in milli-degrees Celsius.
    pub fn temperature_report(&mut self, at: DateTime<Utc>, milli_c: i32) -> Report {
        self.report(at, ReportBody::Temperature { milli_c })
    }

    /// Packs `reports` into a batch sent at `now` and signs it. With
    /// default options this is what honest firmware uploads.
    pub fn sign(
        &self,
        reports: Vec<Report>,
        now: DateTime<Utc>,
        options: &SignOptions,
    ) -> Result<SignedBatch, EncodeError> {
        let bound = |secs: i64| secs.clamp(-MAX_SIM_CLOCK_OFFSET_SECS, MAX_SIM_CLOCK_OFFSET_SECS);
        let now = now.trunc_subsecs(0);
        let fridge_clock = now
            .checked_add_signed(TimeDelta::seconds(bound(options.clock_skew_secs)))
            .unwrap_or(now);
        let batch = Batch {
            fridge_id: options
                .fridge_in_body
                .clone()
                .unwrap_or_else(|| self.id.clone()),
            sent_at: fridge_clock,
            reports,
        };
        let body = encode(self.dialect, &batch)?;
        let timestamp = fridge_clock.timestamp() - bound(options.stale_timestamp_secs);
        let secret = options.wrong_secret.as_deref().unwrap_or(&self.secret);
        Ok(SignedBatch {
            fridge_id: self.id.clone(),
            dialect: self.dialect,
            signature: fridge_acl::sign(secret, timestamp, &body),
            body: Bytes::from(body),
            content_type: self.dialect.content_type(),
            timestamp,
            seqs: batch.reports.iter().map(|r| r.seq).collect(),
        })
    }

    /// A signed batch with one scan, now.
    pub fn scan(&mut self, counts: &MealCounts) -> Result<SignedBatch, EncodeError> {
        let now = Utc::now();
        let report = self.scan_report(now, counts);
        self.sign(vec![report], now, &SignOptions::default())
    }

    /// A signed batch with one door session, now.
    pub fn door(
        &mut self,
        who: DoorActor,
        taken: &MealCounts,
        added: &MealCounts,
    ) -> Result<SignedBatch, EncodeError> {
        let now = Utc::now();
        let report = self.door_report(now, who, taken, added);
        self.sign(vec![report], now, &SignOptions::default())
    }

    /// A signed batch with one temperature sample, now.
    pub fn temperature(&mut self, milli_c: i32) -> Result<SignedBatch, EncodeError> {
        let now = Utc::now();
        let report = self.temperature_report(now, milli_c);
        self.sign(vec![report], now, &SignOptions::default())
    }

    /// A signed empty batch: a heartbeat. Uses no report number.
    pub fn heartbeat(&self) -> Result<SignedBatch, EncodeError> {
        self.sign(Vec::new(), Utc::now(), &SignOptions::default())
    }
}

/// Reads a signed batch back the way the node will: the dialect's parser
/// and the fridge-id check. For refusing to send a batch that is wrong by
/// accident; misbehaviour tests skip it on purpose.
pub fn check(signed: &SignedBatch) -> Result<Batch, ParseError> {
    signed.dialect.parse(&signed.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use fridge_acl::{verify_signature, AuthError, Secrets};

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_741_089_605, 0)
            .single()
            .unwrap_or_default()
    }

    fn counts(pairs: &[(&'static str, u32)]) -> MealCounts {
        pairs
            .iter()
            .map(|(m, u)| (MealId::from_static(m), *u))
            .collect()
    }

    fn verify(signed: &SignedBatch, secret: &[u8], at: DateTime<Utc>) -> Result<(), AuthError> {
        verify_signature(
            &Secrets::new(secret),
            &signed.body,
            &signed.timestamp.to_string(),
            &signed.signature,
            at,
        )
        .map(|_| ())
    }

    /// Scan, pickup, refill, unknown door and temperatures in one batch,
    /// per dialect: the node's parser reads back exactly what was built,
    /// numbered in order, and the signature verifies with the fridge's
    /// secret.
    #[test]
    fn built_batches_parse_and_verify_in_both_dialects() {
        for dialect in Dialect::ALL {
            let mut fridge = SimFridge::new(FridgeId::from_static("f-corktown"), dialect, "s3cret");
            fridge.seq = 40;
            let t = now() - TimeDelta::seconds(30);
            let none = MealCounts::new();
            let reports = vec![
                fridge.scan_report(t, &counts(&[("m-kale", 4), ("m-soup", 2)])),
                fridge.door_report(
                    t,
                    DoorActor::PickupCode("482913".into()),
                    &counts(&[("m-kale", 1)]),
                    &none,
                ),
                fridge.door_report(
                    t,
                    DoorActor::Staff("B-17".into()),
                    &none,
                    &counts(&[("m-soup", 6)]),
                ),
                fridge.door_report(t, DoorActor::Unknown, &counts(&[("m-soup", 1)]), &none),
                fridge.temperature_report(t, 4_700),
                fridge.temperature_report(t, -18_500),
            ];
            let expected = reports.clone();
            let signed = fridge
                .sign(reports, now(), &SignOptions::default())
                .unwrap_or_else(|e| panic!("{dialect}: {e}"));
            assert_eq!(signed.seqs, vec![41, 42, 43, 44, 45, 46]);
            assert_eq!(fridge.seq, 46);
            assert_eq!(signed.content_type, dialect.content_type());
            let batch = check(&signed).unwrap_or_else(|e| panic!("{dialect}: {e}"));
            assert_eq!(batch.fridge_id, "f-corktown");
            assert_eq!(batch.sent_at, now());
            assert_eq!(batch.reports, expected);
            assert_eq!(fridge_acl::check_fridge("f-corktown", &batch), Ok(()));
            assert_eq!(verify(&signed, b"s3cret", now()), Ok(()));
            let headers = signed.headers();
            assert_eq!(headers[1], ("x-larder-timestamp", "1741089605".into()));
            assert_eq!(headers[2].0, "x-larder-signature");
        }
    }

    #[test]
    fn convenience_builders_parse_and_verify() {
        for dialect in Dialect::ALL {
            let mut fridge = SimFridge::new(FridgeId::from_static("f-1"), dialect, "k");
            let built = [
                fridge.scan(&counts(&[("m-a", 3)])),
                fridge.door(
                    DoorActor::Unknown,
                    &counts(&[("m-a", 1)]),
                    &MealCounts::new(),
                ),
                fridge.temperature(3_500),
                fridge.heartbeat(),
            ];
            for (i, signed) in built.into_iter().enumerate() {
                let signed = signed.unwrap_or_else(|e| panic!("{dialect} #{i}: {e}"));
                assert!(check(&signed).is_ok(), "{dialect} #{i}");
                assert_eq!(verify(&signed, b"k", Utc::now()), Ok(()), "{dialect} #{i}");
            }
            assert_eq!(fridge.seq, 3, "a heartbeat uses no number");
        }
    }

    #[test]
    fn misbehaviour_is_what_the_node_refuses() {
        let mut fridge = SimFridge::new(
            FridgeId::from_static("f-1"),
            Dialect::ColdlineLines,
            "right",
        );
        let r = fridge.temperature_report(now(), 4_000);

        let wrong = SignOptions {
            wrong_secret: Some(b"wrong".to_vec()),
            ..SignOptions::default()
        };
        let signed = fridge
            .sign(vec![r.clone()], now(), &wrong)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verify(&signed, b"right", now()),
            Err(AuthError::BadSignature)
        );

        let stale = SignOptions {
            stale_timestamp_secs: 400,
            ..SignOptions::default()
        };
        let signed = fridge
            .sign(vec![r.clone()], now(), &stale)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verify(&signed, b"right", now()),
            Err(AuthError::Skew { skew_secs: -400 })
        );

        let skewed = SignOptions {
            clock_skew_secs: -120,
            ..SignOptions::default()
        };
        let signed = fridge
            .sign(vec![r.clone()], now(), &skewed)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verify(&signed, b"right", now()), Ok(()), "within the skew");
        let batch = check(&signed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(batch.sent_at, now() - TimeDelta::seconds(120));

        let other = SignOptions {
            fridge_in_body: Some(FridgeId::from_static("f-2")),
            ..SignOptions::default()
        };
        let signed = fridge
            .sign(vec![r], now(), &other)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verify(&signed, b"right", now()), Ok(()));
        assert_eq!(signed.fridge_id, "f-1");
        let batch = check(&signed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fridge_acl::check_fridge(&signed.fridge_id, &batch).map_err(|e| e.http_status()),
            Err(403)
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let fridge = SimFridge::new(
            FridgeId::from_static("f-1"),
            Dialect::FrostlineJson,
            "hunter2",
        );
        let shown = format!("{fridge:?}");
        assert!(
            shown.contains("f-1") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn celsius_rounds_to_tenths() {
        assert_eq!(milli_c_from_celsius(7.5), Ok(7_500));
        assert_eq!(milli_c_from_celsius(4.74), Ok(4_700));
        assert_eq!(milli_c_from_celsius(-18.56), Ok(-18_600));
        assert_eq!(
            milli_c_from_celsius(99.0),
            Ok(99_000),
            "sendable, refused by the node"
        );
        assert!(milli_c_from_celsius(f64::NAN).is_err());
        assert!(milli_c_from_celsius(1.0e12).is_err());
    }
}
