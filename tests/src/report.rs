//! What the load and benchmark binaries share besides the harness: their
//! command line (positional numbers as before, plus `--help`,
//! `--progress` and `--report FILE`), a one-line progress display on
//! stderr while they run, and a small self-contained report (HTML with
//! inline SVG histograms, or an SVG alone) of their latencies and summary
//! numbers. No JavaScript, no CDN: the file opens anywhere.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Bars per histogram.
const HISTOGRAM_BUCKETS: usize = 24;
/// Size of one histogram drawing, in SVG user units (pixels).
const CHART_WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 200.0;
const CHART_MARGIN: f64 = 40.0;

/// A benchmark's command line: the positional numbers it always took,
/// and the shared flags.
#[derive(Debug, Default)]
pub struct BenchArgs {
    positional: Vec<String>,
    /// `--progress`: draw progress even when stderr is not a terminal.
    pub progress: bool,
    /// `--report FILE`: write the report there (`.svg`: the charts only).
    pub report: Option<PathBuf>,
    /// `--wrk`: drive the open-loop phase with wrk (a C client) instead of
    /// the tool's own Rust clients (larder-load).
    pub wrk: bool,
    /// `--singles`: publish one payment request per message, the first
    /// wire shape, instead of batch messages (larder-payments-bench).
    pub singles: bool,
    pub help: bool,
}

impl BenchArgs {
    /// This process's arguments.
    pub fn from_env() -> Result<BenchArgs, String> {
        BenchArgs::parse(std::env::args().skip(1))
    }

    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<BenchArgs, String> {
        let mut out = BenchArgs::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "-h" | "--help" => out.help = true,
                "--progress" => out.progress = true,
                "--wrk" => out.wrk = true,
                "--singles" => out.singles = true,
                "--report" => {
                    let path = args.next().ok_or("--report needs a file name")?;
                    out.report = Some(PathBuf::from(path));
                }
                // `cargo bench` and test runners add flags of their own.
                "--bench" => {}
                flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
                _ => out.positional.push(a),
            }
        }
        Ok(out)
    }

    /// Positional argument `i` (0 = the first) as a number, or `default`.
    pub fn number(&self, i: usize, default: u64) -> u64 {
        self.positional
            .get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    }

    /// Parses the command line; prints `usage` and exits on `--help`
    /// (status 0) or a bad flag (status 2).
    pub fn or_usage(usage: &str) -> BenchArgs {
        match BenchArgs::from_env() {
            Ok(args) if args.help => {
                // `--help | head` closes the pipe early; that is no error.
                let _ = writeln!(std::io::stdout(), "{usage}");
                std::process::exit(0);
            }
            Ok(args) => args,
            Err(e) => {
                eprintln!("{e}\n\n{usage}");
                std::process::exit(2);
            }
        }
    }

    /// Whether to draw progress: on a terminal, or when asked.
    pub fn wants_progress(&self) -> bool {
        self.progress || std::io::stderr().is_terminal()
    }
}

/// Counts operations and their latencies while a phase runs, and redraws
/// one line on stderr: done, rate, p99 so far, elapsed.
pub struct Progress {
    label: String,
    started: Instant,
    done: AtomicU64,
    failed: AtomicU64,
    /// Latencies in µs, kept only while drawing (a lock per sample).
    latency_us: Option<Mutex<Histogram<u64>>>,
    stop: AtomicBool,
}

impl Progress {
    /// A phase called `label`; draws only when `enabled`.
    pub fn start(label: &str, enabled: bool) -> Arc<Progress> {
        let p = Arc::new(Progress {
            label: label.to_string(),
            started: Instant::now(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency_us: enabled.then(|| Mutex::new(new_histogram_us())),
            stop: AtomicBool::new(false),
        });
        if enabled {
            let drawer = p.clone();
            std::thread::spawn(move || drawer.draw_until_stopped());
        }
        p
    }

    /// One operation done in `took` (`ok`: answered as expected).
    pub fn record(&self, took: Duration, ok: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = &self.latency_us {
            if let Ok(mut h) = h.lock() {
                h.saturating_record(took.as_micros() as u64);
            }
        }
    }

    /// The line as it is drawn now.
    pub fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = self.done.load(Ordering::Relaxed);
        let p99_ms = self
            .latency_us
            .as_ref()
            .and_then(|h| {
                h.lock()
                    .ok()
                    .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0)
            })
            .unwrap_or(0.0);
        format!(
            "{}: {done} done ({} failed), {:.0}/s, p99 {p99_ms:.1} ms, {elapsed:.0} s",
            self.label,
            self.failed.load(Ordering::Relaxed),
            done as f64 / elapsed.max(1e-3),
        )
    }

    /// Stops drawing and ends the line.
    pub fn finish(&self) {
        if self.latency_us.is_some() && !self.stop.swap(true, Ordering::Relaxed) {
            eprintln!("\r{}\x1b[K", self.line());
        }
    }

    fn draw_until_stopped(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            eprint!("\r{}\x1b[K", self.line());
            let _ = std::io::stderr().flush();
            std::thread::sleep(PROGRESS_EVERY);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn new_histogram_us() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant figures; the bounds are constants
    // hdrhistogram accepts.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

/// A report: a title, summary numbers, and latency histograms.
#[derive(Default)]
pub struct Report {
    pub title: String,
    pub summary: Vec<(String, String)>,
    /// (name, latencies in µs).
    pub histograms: Vec<(String, Histogram<u64>)>,
}

impl Report {
    pub fn new(title: &str) -> Report {
        Report {
            title: title.to_string(),
            ..Report::default()
        }
    }

    pub fn number(&mut self, name: &str, value: impl std::fmt::Display) {
        self.summary.push((name.to_string(), value.to_string()));
    }

    /// A latency histogram; `nanos` histograms are converted to µs.
    pub fn histogram_ns(&mut self, name: &str, nanos: &Histogram<u64>) {
        let mut us = new_histogram_us();
        for v in nanos.iter_recorded() {
            us.saturating_record_n(v.value_iterated_to() / 1000, v.count_at_value());
        }
        self.histograms.push((name.to_string(), us));
    }

    pub fn histogram_us(&mut self, name: &str, micros: &Histogram<u64>) {
        self.histograms.push((name.to_string(), micros.clone()));
    }

    /// Writes HTML, or SVG when `path` ends in `.svg`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let svg = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        let text = if svg { self.svg() } else { self.html() };
        std::fs::write(path, text)
    }

    /// A page with the summary table and one chart per histogram.
    pub fn html(&self) -> String {
        let mut out = String::new();
        let title = escape(&self.title);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{title}</title>\n<style>body{{font-family:sans-serif;margin:2em;}}\
             table{{border-collapse:collapse;}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;}}\
             </style>\n</head>\n<body>\n<h1>{title}</h1>\n<table>\n"
        );
        for (name, value) in &self.summary {
            let _ = writeln!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            );
        }
        out.push_str("</table>\n");
        for (name, h) in &self.histograms {
            let _ = writeln!(out, "<h2>{}</h2>", escape(name));
            out.push_str(&chart(name, h));
            out.push('\n');
        }
        out.push_str("</body>\n</html>\n");
        out
    }

    /// The charts alone, stacked, as one SVG document.
    pub fn svg(&self) -> String {
        let height = CHART_HEIGHT + 2.0 * CHART_MARGIN;
        let total = height * self.histograms.len().max(1) as f64;
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"{w}\" height=\"{total}\" viewBox=\"0 0 {w} {total}\">\n<title>{}</title>\n",
            escape(&self.title),
            w = CHART_WIDTH + 2.0 * CHART_MARGIN,
        );
        for (i, (name, h)) in self.histograms.iter().enumerate() {
            let _ = writeln!(
                out,
                "<g transform=\"translate(0 {})\">{}</g>",
                height * i as f64,
                chart(name, h)
            );
        }
        out.push_str("</svg>\n");
        out
    }
}

/// Latencies (µs) bucketed on a log scale between the smallest and the
/// largest: (lower bound µs, upper bound µs, count).
pub fn buckets(h: &Histogram<u64>) -> Vec<(f64, f64, u64)> {
    if h.is_empty() {
        return vec![];
    }
    let low = (h.min().max(1)) as f64;
    let high = (h.max().max(1) as f64 * 1.001).max(low * 1.001);
    let step = (high / low).powf(1.0 / HISTOGRAM_BUCKETS as f64);
    let mut out: Vec<(f64, f64, u64)> = (0..HISTOGRAM_BUCKETS)
        .map(|i| {
            let from = low * step.powi(i as i32);
            (from, from * step, 0)
        })
        .collect();
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to()).max(1) as f64;
        let value = value.clamp(low, high * 0.999_999);
        let i = ((value / low).ln() / step.ln()).floor() as usize;
        out[i.min(HISTOGRAM_BUCKETS - 1)].2 += v.count_at_value();
    }
    out
}

/// One histogram as an inline `<svg>`: a bar per bucket (counts), the
/// axis in ms, p50/p99 marked in the caption.
fn chart(name: &str, h: &Histogram<u64>) -> String {
    let (w, ht, m) = (CHART_WIDTH, CHART_HEIGHT, CHART_MARGIN);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" \
         aria-label=\"{}\">",
        w + 2.0 * m,
        ht + 2.0 * m,
        escape(name)
    );
    let buckets = buckets(h);
    let most = buckets.iter().map(|b| b.2).max().unwrap_or(0).max(1) as f64;
    let bar_w = w / HISTOGRAM_BUCKETS as f64;
    for (i, (from, to, n)) in buckets.iter().enumerate().filter(|(_, b)| b.2 > 0) {
        let bar_h = (*n as f64 / most * ht).max(1.0);
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar_h:.1}\" \
             fill=\"#4a7ab5\"><title>{:.3}–{:.3} ms: {n}</title></rect>",
            m + i as f64 * bar_w,
            m + ht - bar_h,
            bar_w - 1.0,
            from / 1000.0,
            to / 1000.0,
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{m}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#333\"/>",
        y = m + ht,
        x2 = m + w
    );
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        let _ = write!(
            out,
            "<text x=\"{m}\" y=\"{y}\" font-size=\"12\">{:.3} ms</text>\
             <text x=\"{x}\" y=\"{y}\" font-size=\"12\" text-anchor=\"end\">{:.3} ms</text>",
            first.0 / 1000.0,
            last.1 / 1000.0,
            y = m + ht + 16.0,
            x = m + w,
        );
    }
    let _ = write!(
        out,
        "<text x=\"{m}\" y=\"{}\" font-size=\"13\">{} — n={} p50={:.2} ms p99={:.2} ms max={:.2} ms (log scale)</text></svg>",
        m - 12.0,
        escape(name),
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    );
    out
}

/// Text for HTML and XML content and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies() -> Histogram<u64> {
        let mut h = new_histogram_us();
        for us in [900, 1_000, 1_100, 1_200, 5_000, 5_100, 40_000] {
            h.record(us).unwrap();
        }
        h
    }

    /// Every opened element is closed, in order (a small XML check: the
    /// writer emits no comments, CDATA or processing instructions except
    /// the declaration).
    fn balanced(doc: &str) -> bool {
        let mut open: Vec<String> = vec![];
        let mut rest = doc;
        while let Some(at) = rest.find('<') {
            let end = match rest[at..].find('>') {
                Some(e) => at + e,
                None => return false,
            };
            let tag = &rest[at + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') || tag.starts_with('?') || tag.ends_with('/') {
                continue;
            }
            let name = tag
                .trim_start_matches('/')
                .split_whitespace()
                .next()
                .unwrap_or("");
            if ["meta", "br"].contains(&name) {
                continue;
            }
            if tag.starts_with('/') {
                if open.pop().as_deref() != Some(name) {
                    return false;
                }
            } else {
                open.push(name.to_string());
            }
        }
        open.is_empty()
    }

    fn report() -> Report {
        let mut r = Report::new("larder-load <test> & co");
        r.number("confirmed_per_sec", 1234);
        r.histogram_us("confirm latency", &latencies());
        r
    }

    #[test]
    fn the_html_report_is_well_formed_and_draws_a_bar_per_occupied_bucket() {
        let html = report().html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(balanced(&html), "{html}");
        let occupied = buckets(&latencies()).iter().filter(|b| b.2 > 0).count();
        assert!(occupied >= 3, "the samples span several buckets");
        assert_eq!(html.matches("<rect class=\"bar\"").count(), occupied);
        assert!(html.contains("larder-load &lt;test&gt; &amp; co"));
        assert!(html.contains("<th>confirmed_per_sec</th><td>1234</td>"));
        assert!(!html.contains("<script"), "no JavaScript");
    }

    #[test]
    fn the_svg_report_is_one_well_formed_document() {
        let svg = report().svg();
        assert!(svg.starts_with("<?xml"));
        assert!(balanced(&svg), "{svg}");
        assert!(svg.contains("<rect class=\"bar\""));
    }

    #[test]
    fn buckets_hold_every_sample() {
        let b = buckets(&latencies());
        assert_eq!(b.iter().map(|b| b.2).sum::<u64>(), 7);
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].0 * 1.000_001));
    }

    #[test]
    fn positional_numbers_stay_where_they_were_beside_the_new_flags() {
        let args = ["8", "--progress", "3", "--report", "r.html"].map(String::from);
        let a = BenchArgs::parse(args).unwrap();
        assert_eq!(
            (a.number(0, 64), a.number(1, 10), a.number(2, 16)),
            (8, 3, 16)
        );
        assert!(a.progress);
        assert_eq!(a.report.as_deref(), Some(Path::new("r.html")));
        assert!(BenchArgs::parse(["--nope".to_string()]).is_err());
    }
}
