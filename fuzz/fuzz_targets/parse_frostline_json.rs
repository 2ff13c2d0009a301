//! Fuzzes the `frostline-json` parser: any bytes must give a batch or an
//! error, never a panic, and a parsed batch must respect the limits.
#![no_main]

use fridge_acl::report::{MAX_MEALS_PER_REPORT, MAX_REPORTS_PER_BATCH};
use fridge_acl::{frostline, ReportBody};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = frostline::parse(data) {
        assert!(batch.reports.len() <= MAX_REPORTS_PER_BATCH);
        for r in &batch.reports {
            assert!(r.seq >= 1);
            if let ReportBody::Scan(s) = &r.body {
                assert!(s.counts.len() <= MAX_MEALS_PER_REPORT);
            }
        }
    }
});
