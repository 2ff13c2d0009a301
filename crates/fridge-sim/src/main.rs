//! `fridge-sim`: plays smart fridges against a Larder region node.
//!
//! One-shot commands (`scan`, `door`, `refill`, `temp`, `heartbeat`) send
//! one upload (or a few, with `--duplicate` / `--shuffle`) and print each
//! answer as one JSON line on stdout; the exit code says whether every
//! answer had the expected status. `run` plays the demo fridges in normal
//! operation until Ctrl-C; `flood` measures readings per second. Logs go to
//! stderr (`FRIDGE_SIM_LOG`, a tracing filter, default `info`).
//!
//! Exit codes: 0 every answer as expected, 1 an answer was not, 2 the
//! command could not run (bad input, node unreachable).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, Parser, Subcommand};
use fridge_acl::{FridgeId, MealId};
use fridge_sim::{
    check, flood, milli_c_from_celsius, register_fridge, run, send, Demo, DemoFridge, Dialect,
    DoorActor, FloodConfig, MealCounts, RunConfig, SignOptions, SimFridge, STATUS_ACCEPTED,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;

/// Where a region node listens in `region-node dev`.
const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8080";
/// Campus Martius, inside the demo district: where `flood --admin-token`
/// registers its fridges.
const DEFAULT_FLOOD_LAT: f64 = 42.3316;
const DEFAULT_FLOOD_LON: f64 = -83.0466;
/// Most `temp --samples`: one batch holds at most this many reports.
const MAX_SAMPLES: i64 = fridge_acl::report::MAX_REPORTS_PER_BATCH as i64;
/// Longest `temp --every-secs`: a day.
const MAX_SAMPLE_INTERVAL_SECS: i64 = 24 * 3600;

#[derive(Parser)]
#[command(
    name = "fridge-sim",
    version,
    about = "Plays Larder smart fridges against a region node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inventory scan: absolute units per meal (unlisted meals are 0).
    Scan {
        #[command(flatten)]
        upload: UploadArgs,
        /// MEAL=UNITS, repeatable; none at all is an empty fridge.
        #[arg(long = "count", value_parser = meal_units, num_args = 1..)]
        counts: Vec<(MealId, u32)>,
    },
    /// Door session: a customer with --code, or unknown (no code) → shrinkage.
    Door {
        #[command(flatten)]
        upload: UploadArgs,
        /// Pickup code the customer typed; without it the door was opened
        /// with no credentials.
        #[arg(long)]
        code: Option<String>,
        /// MEAL=UNITS taken out, repeatable.
        #[arg(long, value_parser = meal_units, num_args = 1..)]
        taken: Vec<(MealId, u32)>,
        /// MEAL=UNITS put in, repeatable.
        #[arg(long, value_parser = meal_units, num_args = 1..)]
        added: Vec<(MealId, u32)>,
    },
    /// Staff door session (badge): units added and/or withdrawn.
    Refill {
        #[command(flatten)]
        upload: UploadArgs,
        #[arg(long, default_value = "B-SIM")]
        badge: String,
        /// MEAL=UNITS put in, repeatable.
        #[arg(long, value_parser = meal_units, num_args = 1..)]
        added: Vec<(MealId, u32)>,
        /// MEAL=UNITS withdrawn (expired, damaged), repeatable.
        #[arg(long, value_parser = meal_units, num_args = 1..)]
        taken: Vec<(MealId, u32)>,
    },
    /// Temperature samples (rounded to 0.1 °C, as probes read).
    Temp {
        #[command(flatten)]
        upload: UploadArgs,
        #[arg(long, allow_negative_numbers = true)]
        celsius: f64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 60,
              value_parser = clap::value_parser!(u32).range(1..=MAX_SAMPLE_INTERVAL_SECS))]
        every_secs: u32,
        /// How many samples (numbered --seq, --seq+1, …), in one batch.
        #[arg(long, default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..=MAX_SAMPLES))]
        samples: u32,
    },
    /// An empty batch: keeps the fridge online; the answer shows the node's
    /// highest report number from it.
    Heartbeat {
        #[command(flatten)]
        fridge: FridgeArgs,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Normal operation of the demo fridges until Ctrl-C or --duration-secs.
    Run {
        #[arg(long, env = "LARDER_NODE", default_value = DEFAULT_NODE_URL)]
        node: String,
        /// The demo district file (fridges, secrets, starting stock).
        #[arg(long)]
        demo: PathBuf,
        /// Play only the first N fridges of the file.
        #[arg(long)]
        fridges: Option<usize>,
        /// Time between one fridge's uploads.
        #[arg(long, default_value_t = 5_000)]
        interval_ms: u64,
        #[arg(long)]
        duration_secs: Option<u64>,
        /// A full scan every N uploads.
        #[arg(long, default_value_t = 6)]
        scan_every: u32,
        /// Chance of a staff refill per upload.
        #[arg(long, default_value_t = 0.05)]
        refill_probability: f64,
        /// Start every counter at 1 instead of after the node's highest.
        #[arg(long)]
        no_resume: bool,
    },
    /// Many fridges uploading full batches back to back; prints readings/s.
    Flood {
        #[arg(long, env = "LARDER_NODE", default_value = DEFAULT_NODE_URL)]
        node: String,
        /// Use the demo district's fridges (the first --fridges of them).
        #[arg(long, required_unless_present = "admin_token")]
        demo: Option<PathBuf>,
        /// Instead: register --fridges fresh fridges `sim-flood-N` with this
        /// admin token first.
        #[arg(long, env = "LARDER_ADMIN_TOKEN", conflicts_with = "demo")]
        admin_token: Option<String>,
        #[arg(long, default_value_t = 12)]
        fridges: usize,
        /// Reports per upload, 1..=1000 (the batch limit).
        #[arg(long, default_value_t = 500,
              value_parser = clap::value_parser!(u16).range(1..=MAX_SAMPLES))]
        readings_per_batch: u16,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// Who the fridge is and which node it talks to.
#[derive(Args)]
struct FridgeArgs {
    #[arg(long, env = "LARDER_NODE", default_value = DEFAULT_NODE_URL)]
    node: String,
    /// The fridge's id (the URL's `{fridge_id}`).
    #[arg(long)]
    fridge: FridgeId,
    /// Signing secret; read from --demo if absent.
    #[arg(long, env = "FRIDGE_SECRET")]
    secret: Option<String>,
    /// frostline-json or coldline-lines; read from --demo if absent.
    #[arg(long)]
    dialect: Option<Dialect>,
    /// Demo district file to look the fridge's secret and dialect up in.
    #[arg(long)]
    demo: Option<PathBuf>,
}

/// How the upload is sent and judged, including deliberate misbehaviour.
#[derive(Args)]
struct SendArgs {
    /// The status every answer should have; exit 1 if one does not.
    #[arg(long, default_value_t = STATUS_ACCEPTED)]
    expect: u16,
    /// Send the same signed batch twice.
    #[arg(long)]
    duplicate: bool,
    /// Send each report in its own batch, in a random order.
    #[arg(long)]
    shuffle: bool,
    /// Seed for --shuffle (random if absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Sign with a timestamp this many seconds old (over 300: clock_skew).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    stale_timestamp_secs: i64,
    /// Fridge clock ahead (+) or behind (−) by this many seconds: body
    /// times and the signed timestamp move together.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    timestamp_skew_secs: i64,
    /// Sign with a secret that is not the fridge's.
    #[arg(long)]
    wrong_secret: bool,
    /// Name another fridge inside the body (URL and secret stay ours).
    #[arg(long)]
    fridge_in_body: Option<FridgeId>,
    /// Send even if the node's parser would refuse the body.
    #[arg(long)]
    send_invalid: bool,
}

#[derive(Args)]
struct UploadArgs {
    #[command(flatten)]
    fridge: FridgeArgs,
    #[command(flatten)]
    send: SendArgs,
    /// Number of the first report; later ones follow on.
    #[arg(long)]
    seq: u64,
    /// When it was observed (RFC 3339); default now.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
}

fn meal_units(s: &str) -> Result<(MealId, u32), String> {
    let (meal, units) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not MEAL=UNITS"))?;
    // Reports carry meal ids, so a bad one cannot be sent even on purpose.
    let meal = meal
        .parse()
        .map_err(|e| format!("{meal:?} in {s:?} is not a meal id: {e}"))?;
    let units = units
        .parse()
        .map_err(|_| format!("{units:?} in {s:?} is not a number of units"))?;
    Ok((meal, units))
}

fn counts(pairs: &[(MealId, u32)]) -> anyhow::Result<MealCounts> {
    let mut out = BTreeMap::new();
    for (meal, units) in pairs {
        if out.insert(meal.clone(), *units).is_some() {
            bail!("meal {meal} is listed twice");
        }
    }
    Ok(out)
}

fn fridge(args: &FridgeArgs) -> anyhow::Result<SimFridge> {
    let demo = match &args.demo {
        Some(path) => Some(
            Demo::load(path)?
                .fridge(&args.fridge)
                .cloned()
                .ok_or_else(|| anyhow!("fridge {} is not in {}", args.fridge, path.display()))?,
        ),
        None => None,
    };
    let dialect = args
        .dialect
        .or(demo.as_ref().map(|d| d.fridge.dialect))
        .ok_or_else(|| anyhow!("--dialect is required without --demo"))?;
    let secret = match (&args.secret, &demo) {
        (Some(s), _) => s.as_bytes().to_vec(),
        (None, Some(d)) => d.fridge.secret.clone(),
        (None, None) => bail!("--secret (or FRIDGE_SECRET) is required without --demo"),
    };
    Ok(SimFridge::new(args.fridge.clone(), dialect, secret))
}

/// One line of a one-shot command's output, fields in this order.
#[derive(Serialize)]
struct Printed<'a> {
    status: u16,
    fridge_id: &'a str,
    seqs: &'a [u64],
    answer: &'a serde_json::Value,
}

/// Builds, checks and sends the reports; prints one JSON line per answer.
/// Returns whether every answer had the expected status.
async fn upload(
    fridge: &SimFridge,
    node: &str,
    args: &SendArgs,
    reports: Vec<fridge_acl::Report>,
) -> anyhow::Result<bool> {
    let options = SignOptions {
        clock_skew_secs: args.timestamp_skew_secs,
        stale_timestamp_secs: args.stale_timestamp_secs,
        wrong_secret: args
            .wrong_secret
            .then(|| [fridge.secret.as_slice(), b"-wrong"].concat()),
        fridge_in_body: args.fridge_in_body.clone(),
    };
    let now = Utc::now();
    let mut groups: Vec<Vec<fridge_acl::Report>> = if args.shuffle {
        reports.into_iter().map(|r| vec![r]).collect()
    } else {
        vec![reports]
    };
    if args.shuffle {
        if groups.len() < 2 {
            tracing::warn!("--shuffle with fewer than two reports changes nothing");
        }
        let mut rng = match args.seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_entropy(),
        };
        groups.shuffle(&mut rng);
    }
    let mut batches = Vec::new();
    for group in groups {
        let signed = fridge.sign(group, now, &options)?;
        if !args.send_invalid {
            check(&signed).context("not sent (use --send-invalid to send it anyway)")?;
        }
        if args.duplicate {
            batches.push(signed.clone());
        }
        batches.push(signed);
    }
    let client = reqwest::Client::new();
    let mut all_expected = true;
    for signed in &batches {
        // reqwest's error names the URL.
        let answer = send(&client, node, signed).await?;
        all_expected &= answer.status == args.expect;
        let line = Printed {
            status: answer.status,
            fridge_id: &signed.fridge_id,
            seqs: &signed.seqs,
            answer: &answer.body,
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(all_expected)
}

fn observed_at(at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    at.unwrap_or_else(Utc::now)
}

/// Starts at `seq`: the fridge's counter holds the last number used.
fn at_seq(fridge: &mut SimFridge, seq: u64) -> anyhow::Result<()> {
    if seq == 0 {
        bail!("--seq starts at 1");
    }
    fridge.seq = seq - 1;
    Ok(())
}

/// A receiver that turns true on Ctrl-C (and after `limit`, if given).
fn stop_signal(limit: Option<Duration>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let timer = async {
            match limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot listen for Ctrl-C");
                    std::future::pending::<()>().await;
                }
                tracing::info!("Ctrl-C: stopping after the uploads in flight");
            }
            _ = timer => tracing::info!("duration reached: stopping"),
        }
        let _ = tx.send(true);
    });
    rx
}

async fn one_shot(upload_args: UploadArgs, body: OneShot) -> anyhow::Result<bool> {
    let UploadArgs {
        fridge: fridge_args,
        send: send_args,
        seq,
        at,
    } = upload_args;
    let mut sim = fridge(&fridge_args)?;
    at_seq(&mut sim, seq)?;
    let at = observed_at(at);
    let reports = match body {
        OneShot::Scan(c) => vec![sim.scan_report(at, &c)],
        OneShot::Door { who, taken, added } => vec![sim.door_report(at, who, &taken, &added)],
        OneShot::Temp {
            milli_c,
            every_secs,
            samples,
            explicit_at,
        } => {
            // Bounded by clap: at most 1000 samples a day apart, so the
            // offsets stay far inside `TimeDelta`.
            let every_secs = i64::from(every_secs);
            let span = TimeDelta::seconds(every_secs * i64::from(samples.saturating_sub(1)));
            // Without --at the last sample is now rather than in the future.
            let first = if explicit_at {
                at
            } else {
                at.checked_sub_signed(span).unwrap_or(at)
            };
            (0..i64::from(samples))
                .map(|i| {
                    let t = first
                        .checked_add_signed(TimeDelta::seconds(every_secs * i))
                        .unwrap_or(first);
                    sim.temperature_report(t, milli_c)
                })
                .collect()
        }
    };
    upload(&sim, &fridge_args.node, &send_args, reports).await
}

enum OneShot {
    Scan(MealCounts),
    Door {
        who: DoorActor,
        taken: MealCounts,
        added: MealCounts,
    },
    Temp {
        milli_c: i32,
        every_secs: u32,
        samples: u32,
        explicit_at: bool,
    },
}

async fn main_inner(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Scan { upload, counts: c } => one_shot(upload, OneShot::Scan(counts(&c)?)).await,
        Command::Door {
            upload,
            code,
            taken,
            added,
        } => {
            let who = code.map_or(DoorActor::Unknown, DoorActor::PickupCode);
            let (taken, added) = (counts(&taken)?, counts(&added)?);
            one_shot(upload, OneShot::Door { who, taken, added }).await
        }
        Command::Refill {
            upload,
            badge,
            added,
            taken,
        } => {
            let (taken, added) = (counts(&taken)?, counts(&added)?);
            let who = DoorActor::Staff(badge);
            one_shot(upload, OneShot::Door { who, taken, added }).await
        }
        Command::Temp {
            upload,
            celsius,
            every_secs,
            samples,
        } => {
            let milli_c = milli_c_from_celsius(celsius)?;
            let explicit_at = upload.at.is_some();
            let temp = OneShot::Temp {
                milli_c,
                every_secs,
                samples,
                explicit_at,
            };
            one_shot(upload, temp).await
        }
        Command::Heartbeat { fridge: f, send: s } => {
            let sim = fridge(&f)?;
            upload(&sim, &f.node, &s, Vec::new()).await
        }
        Command::Run {
            node,
            demo,
            fridges,
            interval_ms,
            duration_secs,
            scan_every,
            refill_probability,
            no_resume,
        } => {
            let mut all: Vec<DemoFridge> = Demo::load(&demo)?.fridges;
            all.truncate(fridges.unwrap_or(usize::MAX));
            tracing::info!(fridges = all.len(), %node, "running demo fridges; Ctrl-C stops");
            let stop = stop_signal(duration_secs.map(Duration::from_secs));
            let config = RunConfig {
                node_url: node,
                interval: Duration::from_millis(interval_ms.max(1)),
                scan_every_uploads: scan_every,
                refill_probability,
                resume_from_node: !no_resume,
            };
            let totals = run(all, config, stop).await;
            println!("{}", serde_json::to_string(&totals)?);
            // A run against a node that is down, or one that refuses the
            // fridges, is a failure; a few lost uploads in a long run are not.
            Ok(totals.refused == 0 && (totals.accepted > 0 || totals.uploads == 0))
        }
        Command::Flood {
            node,
            demo,
            admin_token,
            fridges,
            readings_per_batch,
            seconds,
        } => {
            let sims = flood_fridges(&node, demo, admin_token, fridges).await?;
            let stop = stop_signal(None);
            tracing::info!(fridges = sims.len(), readings_per_batch, seconds, %node, "flooding");
            let report = flood(
                sims,
                FloodConfig {
                    node_url: node,
                    readings_per_batch: usize::from(readings_per_batch),
                    duration: Duration::from_secs(seconds),
                    resume_from_node: true,
                },
                stop,
            )
            .await;
            println!("{}", serde_json::to_string(&report)?);
            Ok(report.tally.refused == 0 && report.tally.failed == 0)
        }
    }
}

async fn flood_fridges(
    node: &str,
    demo: Option<PathBuf>,
    admin_token: Option<String>,
    count: usize,
) -> anyhow::Result<Vec<SimFridge>> {
    if let Some(path) = demo {
        let all = Demo::load(&path)?.fridges;
        if count > all.len() {
            bail!(
                "{} has {} fridges; use --admin-token to register {count}",
                path.display(),
                all.len()
            );
        }
        return Ok(all.into_iter().take(count).map(|d| d.fridge).collect());
    }
    let token = admin_token.ok_or_else(|| anyhow!("--demo or --admin-token is required"))?;
    let client = reqwest::Client::new();
    let mut rng = rand::thread_rng();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let dialect = Dialect::ALL[i % Dialect::ALL.len()];
        let secret = format!("sim-flood-{:032x}", rng.gen::<u128>());
        let id = FridgeId::parse(format!("sim-flood-{i}"))?;
        let sim = SimFridge::new(id, dialect, secret);
        let answer = register_fridge(
            &client,
            node,
            &token,
            &sim,
            (DEFAULT_FLOOD_LAT, DEFAULT_FLOOD_LON),
        )
        .await?;
        if !(200..300).contains(&answer.status) {
            bail!(
                "registering {} failed: {} {}",
                sim.id,
                answer.status,
                answer.body
            );
        }
        out.push(sim);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FRIDGE_SIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match main_inner(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fridge-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_meal_units() {
        assert_eq!(
            meal_units("m-kale=4"),
            Ok((MealId::from_static("m-kale"), 4))
        );
        assert!(meal_units("m-kale").is_err());
        assert!(meal_units("bad meal=4").is_err());
        assert!(meal_units("m-kale=-1").is_err());
        assert!(counts(&[
            (MealId::from_static("m-a"), 1),
            (MealId::from_static("m-a"), 2)
        ])
        .is_err());
    }

    #[test]
    fn parses_a_misbehaving_door() {
        let cli = Cli::try_parse_from([
            "fridge-sim",
            "door",
            "--fridge",
            "f-1",
            "--secret",
            "s",
            "--dialect",
            "coldline-lines",
            "--seq",
            "7",
            "--taken",
            "m-a=1",
            "m-b=2",
            "--timestamp-skew-secs",
            "-120",
            "--duplicate",
            "--expect",
            "202",
        ]);
        let Ok(Cli {
            command:
                Command::Door {
                    upload,
                    code,
                    taken,
                    ..
                },
        }) = cli
        else {
            panic!("door did not parse");
        };
        assert_eq!(code, None);
        assert_eq!(taken.len(), 2);
        assert_eq!(upload.seq, 7);
        assert_eq!(upload.send.timestamp_skew_secs, -120);
        assert!(upload.send.duplicate);
        assert_eq!(upload.fridge.dialect, Some(Dialect::ColdlineLines));
    }
}
