//! Results of a load run or a CPU sample: the JSON shape (stable: `scripts/bench.sh` stores it
//! and formats it later), the human-readable summary and the markdown table row.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Bytes per megabyte in every report (decimal, like network rates).
pub const MB: f64 = 1e6;

/// Any report `mjpegd-load` prints as JSON, tagged by `"kind"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// From `mjpegd-load run`.
    Run(Box<RunReport>),
    /// From `mjpegd-load cpu`.
    Cpu(CpuReport),
}

/// The outcome of `mjpegd-load run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// A free-form label given with `--label`.
    pub label: Option<String>,
    /// The URL every viewer requested.
    pub url: String,
    /// Reading viewers requested.
    pub viewers: u32,
    /// How viewers were carried: `HTTP/1.1`, or `HTTP/2` with the streams per connection, and
    /// `over TLS` for `https://` (empty in reports from before it was recorded).
    #[serde(default)]
    pub transport: String,
    /// Connections opened for the reading viewers (first sessions): `viewers` for HTTP/1.1,
    /// fewer with several HTTP/2 streams per connection.
    #[serde(default)]
    pub connections: u32,
    /// Measured run length, seconds.
    pub duration_s: f64,
    /// Time over which connections were spread, seconds.
    pub ramp_s: f64,
    /// Viewers that got a `200` multipart response (with `--churn`: in at least one session).
    pub viewers_streaming: u32,
    /// Viewer sessions opened: `viewers` without `--churn`, more with it (every rejoin is one).
    #[serde(default)]
    pub sessions: u64,
    /// Per-viewer frame rate over the streaming viewers.
    pub fps: Spread,
    /// Valid frames received by all viewers.
    pub frames: u64,
    /// Bytes received by all viewers (response heads, framing and parts).
    pub bytes: u64,
    /// `bytes` over the run length, in MB (10^6 bytes) per second.
    pub mbytes_per_s: f64,
    /// Time from connecting to the first complete valid frame, milliseconds.
    pub ttff_ms: Spread,
    /// Receive time minus the part's `X-Timestamp`, milliseconds, over every valid frame.
    pub latency_ms: Latency,
    /// Parts that failed validation.
    pub invalid_parts: u64,
    /// `invalid_parts` by reason (only reasons that occurred).
    pub invalid_by_reason: BTreeMap<String, u64>,
    /// Valid parts without a parsable `X-Timestamp` (not counted in latency).
    pub missing_timestamp: u64,
    /// Connection-level failures of reading viewers.
    pub errors: Errors,
    /// What happened to the `--stalled` viewers, if any were requested.
    pub stalled: Option<Stalled>,
    /// CPU and memory of the `--pid` process over the run.
    pub server: Option<ProcUsage>,
    /// CPU of this client over the run (near 100 % means the client, not the server, limits).
    pub client_cpu_percent: Option<f64>,
}

/// Minimum, median and maximum (and some percentiles) of a per-viewer quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// How many values.
    pub count: u64,
    /// Smallest value.
    pub min: f64,
    /// 50th percentile.
    pub median: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Publish-to-receive latency percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Number of frames measured.
    pub samples: u64,
    /// 50th percentile, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Largest, ms.
    pub max: f64,
    /// Mean, ms.
    pub mean: f64,
}

/// Failures of reading viewers, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    /// Connecting or sending the request failed or timed out.
    pub connect: u64,
    /// The response status was not 200.
    pub http_status: u64,
    /// `http_status` by status code.
    pub status_codes: BTreeMap<String, u64>,
    /// The server closed or reset the connection before the end of the run.
    pub disconnected: u64,
    /// The response head or body framing was unusable (not multipart, bad chunking).
    pub protocol: u64,
    /// Up to a few distinct error messages, for diagnosis.
    pub samples: Vec<String>,
}

impl Errors {
    /// All failures together.
    pub fn total(&self) -> u64 {
        self.connect + self.http_status + self.disconnected + self.protocol
    }
}

/// The fate of viewers that sent a request and never read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stalled {
    /// Stalled viewers requested.
    pub requested: u32,
    /// Connected and sent their request.
    pub opened: u32,
    /// Could not connect or send.
    pub connect_errors: u32,
    /// Answered with a status other than 200.
    pub rejected: u32,
    /// Answered 200 and later closed by the server (what a send timeout should do).
    pub closed_by_server: u32,
    /// Still open at the end of the run.
    pub still_open: u32,
}

/// CPU and memory of a process over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcUsage {
    /// The process.
    pub pid: u32,
    /// CPU time over wall time, percent of one core.
    pub cpu_percent: f64,
    /// Peak resident set (VmHWM or the largest sampled VmRSS), MB.
    pub peak_rss_mb: f64,
    /// Resident set at the end, MB.
    pub rss_end_mb: f64,
}

/// The outcome of `mjpegd-load cpu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// A free-form label given with `--label`.
    pub label: Option<String>,
    /// Sampled interval, seconds.
    pub duration_s: f64,
    /// The measurement.
    pub usage: ProcUsage,
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stalled = self.stalled.map_or(0, |s| s.requested);
        writeln!(
            f,
            "mjpegd-load: {} viewers{} of {} for {:.1} s (ramp {:.1} s){}",
            self.viewers,
            if stalled > 0 {
                format!(" + {stalled} stalled")
            } else {
                String::new()
            },
            self.url,
            self.duration_s,
            self.ramp_s,
            self.label
                .as_ref()
                .map_or(String::new(), |l| format!(" [{l}]")),
        )?;
        if !self.transport.is_empty() {
            writeln!(
                f,
                "  transport           {} ({} connections)",
                self.transport, self.connections
            )?;
        }
        writeln!(
            f,
            "  streaming viewers   {}/{}",
            self.viewers_streaming, self.viewers
        )?;
        if self.sessions > u64::from(self.viewers) {
            writeln!(f, "  viewer sessions     {}", self.sessions)?;
        }
        writeln!(
            f,
            "  fps per viewer      min {:.1}  median {:.1}  max {:.1}  (mean {:.2})",
            self.fps.min, self.fps.median, self.fps.max, self.fps.mean
        )?;
        writeln!(
            f,
            "  throughput          {:.1} MB/s  ({:.0} MB, {} valid frames)",
            self.mbytes_per_s,
            self.bytes as f64 / MB,
            self.frames
        )?;
        writeln!(
            f,
            "  time to 1st frame   p50 {} ms  max {} ms",
            ms(self.ttff_ms.median),
            ms(self.ttff_ms.max)
        )?;
        writeln!(
            f,
            "  latency             p50 {} ms  p99 {} ms  max {} ms  ({} frames)",
            ms(self.latency_ms.p50),
            ms(self.latency_ms.p99),
            ms(self.latency_ms.max),
            self.latency_ms.samples
        )?;
        write!(f, "  invalid parts       {}", self.invalid_parts)?;
        for (reason, n) in &self.invalid_by_reason {
            write!(f, "  {reason}={n}")?;
        }
        if self.missing_timestamp > 0 {
            write!(f, "  (no X-Timestamp: {})", self.missing_timestamp)?;
        }
        writeln!(f)?;
        let e = &self.errors;
        write!(
            f,
            "  errors              {}  (connect {}, http status {}, disconnected {}, protocol {})",
            e.total(),
            e.connect,
            e.http_status,
            e.disconnected,
            e.protocol
        )?;
        for (code, n) in &e.status_codes {
            write!(f, "  {code}×{n}")?;
        }
        writeln!(f)?;
        for s in &e.samples {
            writeln!(f, "    e.g. {s}")?;
        }
        if let Some(s) = self.stalled {
            writeln!(
                f,
                "  stalled viewers     {} opened, {} closed by server, {} still open, {} rejected, {} connect errors",
                s.opened, s.closed_by_server, s.still_open, s.rejected, s.connect_errors
            )?;
        }
        if let Some(u) = self.server {
            writeln!(
                f,
                "  server pid {:<8} CPU {:.1} %  peak RSS {:.1} MB  (end {:.1} MB)",
                u.pid, u.cpu_percent, u.peak_rss_mb, u.rss_end_mb
            )?;
        }
        if let Some(c) = self.client_cpu_percent {
            writeln!(f, "  client              CPU {c:.1} %")?;
        }
        Ok(())
    }
}

impl fmt::Display for CpuReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pid {}: CPU {:.2} % over {:.1} s, peak RSS {:.1} MB, RSS {:.1} MB{}",
            self.usage.pid,
            self.usage.cpu_percent,
            self.duration_s,
            self.usage.peak_rss_mb,
            self.usage.rss_end_mb,
            self.label
                .as_ref()
                .map_or(String::new(), |l| format!(" [{l}]")),
        )
    }
}

/// The header (two lines) of the table [`markdown_row`] fills.
pub fn markdown_header() -> String {
    "| case | viewers | fps median / min | MB/s | latency p50 / p99 / max (ms) | TTFF p50 / max (ms) | server CPU % | server peak RSS (MB) | client CPU % | invalid / errors | fps vs ceiling |\n\
     |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        .to_owned()
}

/// One markdown table row for a report; `ceiling` (a run of the reference server under the same
/// load) adds the ratio of median fps.
pub fn markdown_row(label: &str, report: &Report, ceiling: Option<&Report>) -> String {
    let dash = "–";
    match report {
        Report::Run(r) => {
            let viewers = match r.stalled {
                Some(s) if s.requested > 0 => format!("{} + {} stalled", r.viewers, s.requested),
                _ => r.viewers.to_string(),
            };
            let (cpu, rss) = r.server.map_or((dash.to_owned(), dash.to_owned()), |u| {
                (
                    format!("{:.1}", u.cpu_percent),
                    format!("{:.1}", u.peak_rss_mb),
                )
            });
            let client = r
                .client_cpu_percent
                .map_or(dash.to_owned(), |c| format!("{c:.0}"));
            let mut errors = format!("{} / {}", r.invalid_parts, r.errors.total());
            if let Some(s) = r.stalled.filter(|s| s.requested > 0) {
                errors.push_str(&format!(
                    "; stalled cut {}/{}",
                    s.closed_by_server, s.requested
                ));
            }
            let ratio = match ceiling {
                Some(Report::Run(c)) if c.fps.median > 0.0 => {
                    format!("{:.2}", r.fps.median / c.fps.median)
                }
                _ => dash.to_owned(),
            };
            format!(
                "| {label} | {viewers} | {:.1} / {:.1} | {:.0} | {} / {} / {} | {} / {} | {cpu} | {rss} | {client} | {errors} | {ratio} |",
                r.fps.median,
                r.fps.min,
                r.mbytes_per_s,
                ms(r.latency_ms.p50),
                ms(r.latency_ms.p99),
                ms(r.latency_ms.max),
                ms(r.ttff_ms.median),
                ms(r.ttff_ms.max),
            )
        }
        Report::Cpu(c) => format!(
            "| {label} | 0 | {dash} | {dash} | {dash} | {dash} | {:.2} | {:.1} now ({:.1} peak) | {dash} | {dash} | {dash} |",
            c.usage.cpu_percent, c.usage.rss_end_mb, c.usage.peak_rss_mb
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunReport {
        RunReport {
            label: Some("x".into()),
            url: "http://127.0.0.1:1/stream".into(),
            viewers: 10,
            transport: "HTTP/1.1".into(),
            connections: 10,
            duration_s: 5.0,
            ramp_s: 0.0,
            viewers_streaming: 10,
            sessions: 10,
            fps: Spread {
                count: 10,
                min: 29.0,
                median: 30.0,
                max: 30.1,
                mean: 29.9,
            },
            frames: 1500,
            bytes: 150_000_000,
            mbytes_per_s: 30.0,
            ttff_ms: Spread::default(),
            latency_ms: Latency::default(),
            invalid_parts: 0,
            invalid_by_reason: BTreeMap::new(),
            missing_timestamp: 0,
            errors: Errors::default(),
            stalled: Some(Stalled {
                requested: 2,
                closed_by_server: 2,
                ..Stalled::default()
            }),
            server: None,
            client_cpu_percent: Some(12.0),
        }
    }

    #[test]
    fn json_round_trip_and_row() {
        let r = Report::Run(Box::new(sample()));
        let json = serde_json::to_string(&r).expect("serialize");
        assert!(json.starts_with(r#"{"kind":"run""#));
        let back: Report = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, r);
        let mut c = sample();
        c.fps.median = 25.0;
        let row = markdown_row("case", &r, Some(&Report::Run(Box::new(c))));
        assert!(row.contains("| 1.20 |"), "{row}");
        assert!(row.contains("stalled cut 2/2"), "{row}");
        assert_eq!(
            row.matches('|').count(),
            markdown_header()
                .lines()
                .next()
                .map_or(0, |l| l.matches('|').count())
        );
        assert!(sample().to_string().contains("median 30.0"));
    }
}
