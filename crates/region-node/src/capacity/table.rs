//! A plan as text tables for people (`--format table`).

use std::fmt::Write;

use super::{Bandwidth, Cost, Plan};

/// Decimal units, as disks and links are sold.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = n;
    let mut unit = 0;
    while value.abs() >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn rate(b: &Bandwidth) -> String {
    format!(
        "{}/s ({}/s)",
        bytes(b.average_bytes_per_sec),
        bytes(b.peak_bytes_per_sec)
    )
}

fn count(n: f64) -> String {
    if n >= 100.0 || n.fract() == 0.0 {
        let whole = n.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{n:.1}")
    }
}

/// The whole plan: measured sizes, flows, storage and bandwidth by year.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    header(plan, &mut out);
    sizes(plan, &mut out);
    flows(plan, &mut out);
    storage(plan, &mut out);
    bandwidth(plan, &mut out);
    out
}

fn header(plan: &Plan, out: &mut String) {
    let s = &plan.scenario;
    let _ = writeln!(out, "Larder capacity plan: {}", s.name);
    let _ = writeln!(
        out,
        "city in year 1: {} users, {} subscribers, {} fridges, {} district(s); \
         {} orders per user per day ({:.0} % app), a fridge upload every {} s; \
         users ×{}/year, fridges ×{}/year; log kept {}",
        count(s.users as f64),
        count(s.subscribers as f64),
        count(s.fridges as f64),
        s.districts,
        s.orders_per_user_per_day,
        s.app_share * 100.0,
        s.telemetry_interval_secs,
        s.user_growth_per_year,
        s.fridge_growth_per_year,
        s.retention_years
            .map_or("forever (as the node does)".to_string(), |y| format!(
                "{y} year(s)"
            )),
    );
}

fn sizes(plan: &Plan, out: &mut String) {
    let z = &plan.sizes;
    let _ = writeln!(
        out,
        "\nMeasured cost of one occurrence (bytes; real events through the district core)"
    );
    let _ = writeln!(
        out,
        "{:<20} {:>8} {:>10} {:>10} {:>12} {:>13} {:>10} {:>8}",
        "flow",
        "records",
        "log bytes",
        "api bytes",
        "push/watcher",
        "push/customer",
        "telemetry",
        "nats"
    );
    let rows: [(&str, &Cost); 9] = [
        ("app order (paid)", &z.app_order),
        ("app order cancelled", &z.app_cancel),
        ("till order (paid)", &z.pos_order),
        ("pickup at the fridge", &z.pickup),
        ("plan day", &z.plan_day),
        ("temperature upload", &z.temperature_upload),
        ("scan upload", &z.scan_upload),
        ("restock", &z.restock),
        ("catalog read", &z.catalog_read),
    ];
    for (name, c) in rows {
        let _ = writeln!(
            out,
            "{:<20} {:>8.1} {:>10.0} {:>10.0} {:>12.0} {:>13.0} {:>10.0} {:>8.0}",
            name,
            c.log_records,
            c.log_record_bytes,
            c.api_bytes,
            c.push_fridge_bytes,
            c.push_customer_bytes,
            c.telemetry_bytes,
            c.nats_bytes
        );
    }
    match z.disk {
        Some(d) => {
            let _ = writeln!(
                out,
                "sled on disk: {:.2} bytes per log record byte (measured appending {} records), \
                 for the last {} records; older ones are sealed at their size + {:.0} bytes each",
                d.disk_bytes_per_record_byte,
                count(d.records_written as f64),
                count(super::SLED_TAIL_RECORDS),
                super::SEALED_BYTES_PER_RECORD
            );
        }
        None => {
            let _ = writeln!(out, "sled on disk: not measured (--no-disk-probe)");
        }
    }
}

fn flows(plan: &Plan, out: &mut String) {
    let _ = writeln!(out, "\nPer district, per day");
    let _ = writeln!(
        out,
        "{:<5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>12}",
        "year",
        "app",
        "cancelled",
        "till",
        "pickups",
        "plan days",
        "uploads",
        "catalog",
        "records",
        "log bytes"
    );
    for y in &plan.years {
        let f = &y.flows_per_day;
        let _ = writeln!(
            out,
            "{:<5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>12}",
            y.year,
            count(f.app_orders),
            count(f.app_cancels),
            count(f.pos_orders),
            count(f.pickups),
            count(f.plan_days),
            count(f.temperature_uploads + f.scan_uploads),
            count(f.catalog_reads),
            count(y.log_records_per_day),
            bytes(y.log_record_bytes_per_day)
        );
    }
}

fn storage(plan: &Plan, out: &mut String) {
    let _ = writeln!(out, "\nStorage per district");
    let _ = writeln!(
        out,
        "{:<5} {:>12} {:>10} {:>16} {:>14} {:>14} {:>12}",
        "year", "users", "fridges", "log written/yr", "log kept", "on disk", "snapshots"
    );
    for y in &plan.years {
        let _ = writeln!(
            out,
            "{:<5} {:>12} {:>10} {:>16} {:>14} {:>14} {:>12}",
            y.year,
            count(y.users),
            count(y.fridges),
            bytes(y.log_record_bytes_written),
            bytes(y.log_record_bytes_kept),
            y.log_disk_bytes_kept.map_or("-".into(), bytes),
            bytes(y.snapshot_bytes)
        );
    }
}

fn bandwidth(plan: &Plan, out: &mut String) {
    let _ = writeln!(
        out,
        "\nBandwidth per district, average (busiest hour), payload bytes"
    );
    let _ = writeln!(
        out,
        "{:<5} {:>24} {:>24} {:>24} {:>24}",
        "year", "app API", "WebSocket push", "fridge telemetry", "NATS"
    );
    for y in &plan.years {
        let c = &y.channels;
        let _ = writeln!(
            out,
            "{:<5} {:>24} {:>24} {:>24} {:>24}",
            y.year,
            rate(&c.app_api),
            rate(&c.websocket_push),
            rate(&c.fridge_telemetry),
            rate(&c.nats)
        );
    }
    if plan.scenario.districts > 1 {
        let _ = writeln!(
            out,
            "(city-wide: × {} districts; NATS carries every district's payments)",
            plan.scenario.districts
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_decimal_units() {
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(1_500.0), "1.5 KB");
        assert_eq!(bytes(2_000_000_000.0), "2.0 GB");
        assert_eq!(count(1_234_567.0), "1,234,567");
    }
}
