//! `region-node capacity`: the scenario from a TOML file and flags, the
//! sizes measured now, the plan printed (`region_node::capacity`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use region_node::capacity::{self, Scenario};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Each flag replaces the scenario's value (the file's, or the demo
/// city's default); docs/capacity.md explains each.
#[derive(clap::Args)]
pub struct ScenarioFlags {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    districts: Option<u64>,
    #[arg(long)]
    users: Option<u64>,
    #[arg(long)]
    subscribers: Option<u64>,
    #[arg(long)]
    fridges: Option<u64>,
    #[arg(long)]
    orders_per_user_per_day: Option<f64>,
    #[arg(long)]
    app_share: Option<f64>,
    #[arg(long)]
    cancel_share: Option<f64>,
    #[arg(long)]
    pickup_share: Option<f64>,
    #[arg(long)]
    plan_days_per_week: Option<f64>,
    #[arg(long)]
    catalog_reads_per_order: Option<f64>,
    #[arg(long)]
    watchers_per_fridge: Option<f64>,
    #[arg(long)]
    telemetry_interval_secs: Option<u64>,
    #[arg(long)]
    scan_every_uploads: Option<u64>,
    #[arg(long)]
    restocks_per_fridge_per_day: Option<f64>,
    #[arg(long)]
    peak_to_average: Option<f64>,
    #[arg(long)]
    user_growth_per_year: Option<f64>,
    #[arg(long)]
    fridge_growth_per_year: Option<f64>,
    #[arg(long)]
    years: Option<u32>,
    /// Years of log kept on the node (default: forever, as the node does).
    #[arg(long)]
    retention_years: Option<u32>,
}

macro_rules! override_fields {
    ($flags:expr, $s:expr, $($field:ident),*) => {
        $(if let Some(v) = $flags.$field.clone() { $s.$field = v; })*
    };
}

impl ScenarioFlags {
    fn apply(&self, s: &mut Scenario) {
        override_fields!(
            self,
            s,
            name,
            districts,
            users,
            subscribers,
            fridges,
            orders_per_user_per_day,
            app_share,
            cancel_share,
            pickup_share,
            plan_days_per_week,
            catalog_reads_per_order,
            watchers_per_fridge,
            telemetry_interval_secs,
            scan_every_uploads,
            restocks_per_fridge_per_day,
            peak_to_average,
            user_growth_per_year,
            fridge_growth_per_year,
            years
        );
        if self.retention_years.is_some() {
            s.retention_years = self.retention_years;
        }
    }
}

fn load(path: Option<&Path>, flags: &ScenarioFlags) -> anyhow::Result<Scenario> {
    let mut scenario = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the scenario {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("scenario {}", p.display()))?
        }
        None => Scenario::default(),
    };
    flags.apply(&mut scenario);
    scenario.check().context("the scenario")?;
    Ok(scenario)
}

/// Measures, plans and prints to stdout.
pub fn run(
    scenario: Option<PathBuf>,
    flags: &ScenarioFlags,
    format: Format,
    disk_probe: bool,
) -> anyhow::Result<()> {
    let scenario = load(scenario.as_deref(), flags)?;
    let (mut sizes, recorded) =
        capacity::measure::measure().context("measuring the flows through the district core")?;
    if disk_probe {
        let dir = std::env::temp_dir().join(format!("larder-capacity-{}", std::process::id()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let factor = rt
            .block_on(capacity::disk::measure(&recorded, &dir))
            .context("measuring sled's space on disk")?;
        sizes.disk = Some(factor);
    }
    let plan = capacity::plan(&scenario, &sizes);
    match format {
        Format::Table => print!("{}", capacity::table::render(&plan)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
    }
    Ok(())
}
