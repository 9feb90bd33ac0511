//! `sim`: runs a scenario of N real nodes on the simulated network (see
//! [`gossip_actors::sim`]) and reports it as a table, a JSON file, a JSON line on stdout
//! (`--json`, always the last line) and an SVG chart (delivery over time, RMR per round).
//!
//! A scenario comes from the flags, or from a TOML file (`--config`) whose keys are the flags'
//! long names with underscores; flags given on the command line override the file:
//!
//! ```toml
//! nodes = 1000
//! mode = "broadcast"      # broadcast | tree | membership
//! scenario = "random"     # single | random | all
//! messages = 10
//! crash = 0.4             # fraction of nodes that crash at once before the first message
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gossip_actors::sim::{self, SimMode, SimProgress, SimReport, SimScenario, SimSenders};
use serde::Deserialize;

/// Dissemination mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Push / ack / pull-sync broadcast.
    Broadcast,
    /// Per-feed epidemic broadcast trees.
    Tree,
    /// Membership (CYCLON) only, no messages.
    Membership,
}

/// Who sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Senders {
    /// Node 0 sends every message.
    Single,
    /// A random node per message.
    Random,
    /// Every node, each round.
    All,
}

/// Command line of `sim`. Every scenario flag is optional: unset ones come from `--config`,
/// then from the defaults of [`SimScenario`].
#[derive(Debug, Default, Parser, Deserialize)]
#[command(
    name = "sim",
    about = "Simulate N real gossip nodes on a virtual network"
)]
#[serde(deny_unknown_fields)]
pub struct SimCli {
    /// TOML file with the scenario (keys as the long flags, `_` for `-`).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// The seed behind every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dissemination mode.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Who sends.
    #[arg(long, value_enum)]
    pub scenario: Option<Senders>,
    /// Message rounds.
    #[arg(long)]
    pub messages: Option<usize>,
    /// Milliseconds between rounds (the measuring window; one gossip cycle by default).
    #[arg(long)]
    pub interval_ms: Option<u64>,
    /// Simulated seconds before the first message.
    #[arg(long)]
    pub warmup_s: Option<u64>,
    /// Simulated seconds after the last round.
    #[arg(long)]
    pub settle_s: Option<u64>,
    /// Smallest link latency, ms.
    #[arg(long)]
    pub latency_min_ms: Option<u64>,
    /// Largest link latency, ms.
    #[arg(long)]
    pub latency_max_ms: Option<u64>,
    /// Datagram loss probability, 0..=1.
    #[arg(long)]
    pub loss: Option<f64>,
    /// Fraction of nodes that crash at once before the first message, 0..1.
    #[arg(long)]
    pub crash: Option<f64>,
    /// Nodes crashed (and restarted a cycle later) per cycle.
    #[arg(long)]
    pub churn: Option<usize>,
    /// Push fanout (broadcast mode).
    #[arg(long)]
    pub fanout: Option<usize>,
    /// Turn pull-sync repair off (pure push; broadcast mode).
    #[arg(long)]
    #[serde(default)]
    pub no_pull: bool,
    /// Run the state protocol and failure detector, and measure detection.
    #[arg(long)]
    #[serde(default)]
    pub detect: bool,
    /// Seal datagrams with AES-256-GCM (default: plaintext, faster).
    #[arg(long)]
    #[serde(default)]
    pub encrypted: bool,
    /// Payload bytes per message.
    #[arg(long)]
    pub payload: Option<usize>,
    /// Directory for the JSON report and the SVG chart.
    #[arg(long, default_value = "target/sim")]
    #[serde(skip)]
    pub out: PathBuf,
    /// Print the JSON report as the last line of stdout.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
}

impl SimCli {
    /// The scenario: defaults, overridden by the file's keys, overridden by the flags.
    ///
    /// # Errors
    /// The file cannot be read or parsed.
    pub fn scenario(&self) -> Result<SimScenario, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<SimCli>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => SimCli::default(),
        };
        let mut s = SimScenario::default();
        for layer in [&file, self] {
            layer.apply(&mut s);
        }
        Ok(s)
    }

    fn apply(&self, s: &mut SimScenario) {
        let ms = Duration::from_millis;
        if let Some(v) = self.nodes {
            s.nodes = v;
        }
        if let Some(v) = self.seed {
            s.seed = v;
        }
        if let Some(v) = self.mode {
            s.mode = match v {
                Mode::Broadcast => SimMode::Broadcast,
                Mode::Tree => SimMode::Tree,
                Mode::Membership => SimMode::Membership,
            };
        }
        if let Some(v) = self.scenario {
            s.senders = match v {
                Senders::Single => SimSenders::Single,
                Senders::Random => SimSenders::Random,
                Senders::All => SimSenders::All,
            };
        }
        if let Some(v) = self.messages {
            s.messages = v;
        }
        if let Some(v) = self.interval_ms {
            s.message_interval = ms(v);
        }
        if let Some(v) = self.warmup_s {
            s.warmup = Duration::from_secs(v);
        }
        if let Some(v) = self.settle_s {
            s.settle = Duration::from_secs(v);
        }
        if let Some(v) = self.latency_min_ms {
            s.latency_min = ms(v);
        }
        if let Some(v) = self.latency_max_ms {
            s.latency_max = ms(v);
        }
        if let Some(v) = self.loss {
            s.loss = v;
        }
        if let Some(v) = self.crash {
            s.crash_fraction = v;
        }
        if let Some(v) = self.churn {
            s.churn_per_cycle = v;
        }
        if let Some(v) = self.fanout {
            s.fanout = v;
        }
        if self.no_pull {
            s.pull = false;
        }
        if self.detect {
            s.detect = true;
        }
        if self.encrypted {
            s.encrypted = true;
        }
        if let Some(v) = self.payload {
            s.payload_len = v;
        }
    }
}

/// Runs `scenario` in a fresh actix system on a current-thread tokio runtime started with a
/// paused clock.
///
/// # Errors
/// The harness's error (it names the seed), or a runtime that cannot be built.
pub fn run_paused(
    scenario: &SimScenario,
    progress: impl FnMut(SimProgress),
) -> Result<SimReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let system = actix::System::with_tokio_rt(move || runtime);
    system
        .block_on(sim::run(scenario, progress))
        .map_err(|e| e.to_string())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "n/a".to_owned(), ToString::to_string)
}

/// The report as a two-column table.
pub fn table(r: &SimReport) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("nodes", r.nodes.to_string()),
        ("seed", r.seed.to_string()),
        ("mode / senders", format!("{:?} / {:?}", r.mode, r.senders)),
        ("messages", r.messages.to_string()),
        (
            "latency ms / loss",
            format!("{}-{} / {}", r.latency_ms[0], r.latency_ms[1], r.loss),
        ),
        (
            "crash / churn per cycle",
            format!("{} / {}", r.crash_fraction, r.churn_per_cycle),
        ),
        ("reliability (min)", opt(&r.reliability)),
        ("reliability (mean)", opt(&r.reliability_mean)),
        ("RMR first round", opt(&r.rmr_first)),
        ("RMR steady (round 3+)", opt(&r.rmr_steady)),
        ("control per broadcast", opt(&r.control_per_broadcast)),
        ("LDH max", opt(&r.ldh_max)),
        (
            "last delivery ms p50/p99/max",
            format!(
                "{} / {} / {}",
                opt(&r.last_delivery_ms_p50),
                opt(&r.last_delivery_ms_p99),
                opt(&r.last_delivery_ms_max)
            ),
        ),
        (
            "first msg reach 300ms/1s/final",
            format!(
                "{} / {} / {}",
                opt(&r.first_reach_300ms),
                opt(&r.first_reach_1s),
                opt(&r.first_reach_final)
            ),
        ),
        (
            "bytes per node per s",
            format!("{:.0}", r.bytes_per_node_per_s),
        ),
        ("detection ms max", opt(&r.detection_ms_max)),
        (
            "detections / false dead",
            format!("{} / {}", r.detections, r.false_dead),
        ),
        (
            "in-degree mean / stddev",
            format!("{} / {}", r.in_degree_mean, r.in_degree_stddev),
        ),
        (
            "crashed / restarted / live",
            format!("{} / {} / {}", r.crashed, r.restarted, r.live_at_end),
        ),
        ("encrypted", r.encrypted.to_string()),
        ("simulated s", format!("{:.1}", r.sim_s)),
        ("wall s", format!("{:.1}", r.wall_s)),
        ("peak RSS MiB", format!("{:.0}", r.peak_rss_mb)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

/// Writes the chart: delivery over time (left) and RMR per round (right), as SVG.
///
/// # Errors
/// The file cannot be written.
pub fn chart(r: &SimReport, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(500);

    let max_ms = r.delivery_curve.last().map_or(100.0, |p| p[0]).max(10.0);
    let mut c = ChartBuilder::on(&left)
        .caption("delivered fraction vs ms since send", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..max_ms, 0.0..1.05)
        .map_err(|e| err(&e))?;
    c.configure_mesh().draw().map_err(|e| err(&e))?;
    c.draw_series(LineSeries::new(
        std::iter::once((0.0, 0.0)).chain(r.delivery_curve.iter().map(|p| (p[0], p[1]))),
        &BLUE,
    ))
    .map_err(|e| err(&e))?;

    let rounds = r.rmr_per_round.len().max(1) as f64;
    let max_rmr = r
        .rmr_per_round
        .iter()
        .copied()
        .fold(0.05, f64::max)
        .max(0.05)
        * 1.1;
    let min_rmr = r.rmr_per_round.iter().copied().fold(0.0, f64::min);
    let mut c = ChartBuilder::on(&right)
        .caption("payload RMR per round", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..rounds + 0.5, min_rmr..max_rmr)
        .map_err(|e| err(&e))?;
    c.configure_mesh().draw().map_err(|e| err(&e))?;
    c.draw_series(
        r.rmr_per_round
            .iter()
            .enumerate()
            .map(|(i, v)| Circle::new((i as f64 + 1.0, *v), 4, RED.filled())),
    )
    .map_err(|e| err(&e))?;
    c.draw_series(LineSeries::new(
        r.rmr_per_round
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 1.0, *v)),
        &RED,
    ))
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The `sim` program.
pub fn main_with(cli: SimCli) -> ExitCode {
    gossip_examples::node::init_logging_with("warn");
    let scenario = match cli.scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim: {e}");
            return ExitCode::from(2);
        }
    };
    let quiet = cli.quiet;
    let mut last_phase = "";
    let mut last_tenth = usize::MAX;
    let progress = |p: SimProgress| {
        if quiet {
            return;
        }
        let tenth = p.done * 10 / p.total.max(1);
        if p.phase != last_phase || tenth != last_tenth {
            eprintln!(
                "[sim t={:>7.1}s] {:<8} {}/{}",
                p.sim_ms as f64 / 1000.0,
                p.phase,
                p.done,
                p.total
            );
            last_phase = p.phase;
            last_tenth = tenth;
        }
    };
    let report = match run_paused(&scenario, progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim failed (seed {}): {e}", scenario.seed);
            return ExitCode::FAILURE;
        }
    };
    print!("{}", table(&report));
    let json = match serde_json::to_string(&report) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("sim: JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stem = format!(
        "sim-{:?}-{:?}-{}-seed{}",
        report.mode, report.senders, report.nodes, report.seed
    )
    .to_lowercase();
    let written = std::fs::create_dir_all(&cli.out)
        .map_err(|e| format!("{}: {e}", cli.out.display()))
        .and_then(|()| {
            let json_path = cli.out.join(format!("{stem}.json"));
            std::fs::write(&json_path, format!("{json}\n"))
                .map_err(|e| format!("{}: {e}", json_path.display()))?;
            let svg_path = cli.out.join(format!("{stem}.svg"));
            chart(&report, &svg_path)?;
            Ok((json_path, svg_path))
        });
    match written {
        Ok((j, s)) => println!("wrote {} and {}", j.display(), s.display()),
        Err(e) => eprintln!("sim: {e}"),
    }
    if cli.json {
        println!("{json}");
    }
    ExitCode::SUCCESS
}
