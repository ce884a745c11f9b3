//! The report: a set-up's measured runs (`Scenario`) and their median, the machine and commit
//! they ran on, the markdown table of `outputs/bench.md` and the charts of `outputs/bench.png`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::measure::{Sample, status_line};
use super::peers::FbWorkload;
use super::{env_usize, root};

pub struct Scenario {
    pub name: String,
    pub bytes: u64,
    pub lines: u64,
    pub samples: Vec<Sample>,
    /// The Fluent Bit workload doing the same work on the same bytes (for Fluent Bit's own rows,
    /// the one it ran).
    pub fluent_bit: Option<FbWorkload>,
}

impl Scenario {
    pub fn median(&self) -> Sample {
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        s[s.len() / 2]
    }
    pub fn mib_s(&self) -> f64 {
        self.bytes as f64 / 1048576.0 / self.median().seconds
    }
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = status_line("/proc/meminfo", "MemTotal:") as f64 / 1048576.0;
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}

pub fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn report(
    scenarios: &[Scenario],
    limit: &Scenario,
    peer: Option<&Scenario>,
    fluent_bit: &[Scenario],
    fluent_bit_section: &str,
    curve: &[(f64, f64)],
    runs: usize,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# log-agent benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo bench --bench e2e` on {}, commit `{}`, {}.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit(),
        machine()
    );
    let _ = writeln!(
        md,
        "Each figure is the median of {runs} runs; time runs from the agent's start until every input byte is checkpointed (delivered and acked). CPU is user + sys of the process; RSS is its peak (VmHWM). Ratios compare with `wc -l` over the same files (the physical limit), with rsyslog imfile -> omfile (the peer) in the same run, and, where it ran the same workload on the same file, with Fluent Bit (`x Fluent Bit`: log-agent's MiB/s over Fluent Bit's; `-` where it has no counterpart).\n"
    );
    let _ = writeln!(
        md,
        "| set-up | input MiB | MiB/s | lines/s | CPU s/GiB | peak RSS MiB | x wc -l | x rsyslog | x Fluent Bit |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<&Scenario> = scenarios.iter().collect();
    rows.push(limit);
    if let Some(peer) = peer {
        rows.push(peer);
    }
    rows.extend(fluent_bit);
    for s in rows {
        let m = s.median();
        let gib = s.bytes as f64 / (1u64 << 30) as f64;
        let cpu = if m.cpu_seconds > 0.0 {
            format!("{:.2}", m.cpu_seconds / gib)
        } else {
            "-".into()
        };
        let rss = if m.peak_rss_kib > 0 {
            format!("{:.1}", m.peak_rss_kib as f64 / 1024.0)
        } else {
            "-".into()
        };
        let vs_peer = peer.map_or("-".into(), |p| format!("{:.2}", s.mib_s() / p.mib_s()));
        let vs_fluent_bit = s
            .fluent_bit
            .and_then(|w| fluent_bit.iter().find(|f| f.fluent_bit == Some(w)))
            .map_or("-".into(), |f| format!("{:.2}", s.mib_s() / f.mib_s()));
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.3} | {} | {} |",
            s.name,
            s.bytes as f64 / 1048576.0,
            s.mib_s(),
            s.lines as f64 / m.seconds,
            cpu,
            rss,
            s.mib_s() / limit.mib_s(),
            vs_peer,
            vs_fluent_bit,
        );
    }
    let _ = writeln!(md, "\n{fluent_bit_section}");
    let _ = writeln!(
        md,
        "Transform rows: the JSON app lines with an `email` key (a quarter of the nginx corpus' size), shipped as NDJSON three ways: parsed by the source (`format: json`) with no transform, the baseline; the same with a `remap` that drops `thread` and `logger` and redacts the email with a regex; and a `format: raw` source whose `remap` parses the line itself (`. |= object!(parse_json!(string!(.message)))`) before the same, as a Vector user would write it. Their difference is what a typical remap costs. No Fluent Bit row: the peer build here has no filter plugins. Every other row has no transform configured.\n"
    );
    let max_rss = curve.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    let first = curve.first().map_or(0.0, |(_, r)| *r);
    let _ = writeln!(
        md,
        "Memory under backpressure: the sink blocked (a FIFO nobody reads) while {} MiB were appended; RSS went from {:.1} MiB to at most {:.1} MiB over {} samples (curve in `bench.png`).\n",
        env_usize("BENCH_BACKPRESSURE_MIB", 1024),
        first,
        max_rss,
        curve.len()
    );
    md
}

pub fn plot(path: &Path, scenarios: &[Scenario], curve: &[(f64, f64)]) {
    use plotters::prelude::*;
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| fs::read(p).ok());
    let Some(font) = font else {
        eprintln!("no DejaVuSans.ttf (Debian's fonts-dejavu-core); bench.png not drawn");
        return;
    };
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
        eprintln!("cannot load the font; bench.png not drawn");
        return;
    }
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let (top, bottom) = root.split_vertically(520);
    let max = scenarios.iter().map(Scenario::mib_s).fold(0.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&top)
        .caption("Throughput (MiB/s, median)", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d(0.0..max, (0..scenarios.len()).into_segmented())
        .unwrap();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => {
                scenarios.get(*i).map_or(String::new(), |s| s.name.clone())
            }
            _ => String::new(),
        })
        .y_labels(scenarios.len())
        .label_style(("sans-serif", 14))
        .draw()
        .unwrap();
    chart
        .draw_series(scenarios.iter().enumerate().map(|(i, s)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (s.mib_s(), SegmentValue::Exact(i + 1)),
                ],
                BLUE.mix(0.6).filled(),
            );
            bar.set_margin(8, 8, 0, 0);
            bar
        }))
        .unwrap();
    let t_max = curve.last().map_or(1.0, |(t, _)| *t).max(1.0);
    let r_max = curve.iter().map(|(_, r)| *r).fold(1.0, f64::max) * 1.3;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "RSS while 1 GiB is appended behind a blocked sink (MiB)",
            ("sans-serif", 24),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..r_max)
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("seconds")
        .label_style(("sans-serif", 14))
        .draw()
        .unwrap();
    chart
        .draw_series(LineSeries::new(curve.iter().copied(), RED.stroke_width(2)))
        .unwrap();
    root.present().unwrap();
}
