//! What the benchmarks share: the sandbox as a child process, a client for its location, and
//! the process figures they report. Included by each bench with `mod common;`.

use ghl_mirror::upstream::{Client, ClientSettings};
use secrecy::SecretString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const LOC: &str = "sandboxLocation00001";
pub const TOKEN: &str = "pit-sandbox-token-1";

/// `ghl-mirror sandbox` running as a child process; killed on drop.
pub struct SandboxProcess {
    child: Child,
    pub base_url: String,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin sandbox` with `contacts` contacts on a free port, `latency_ms` per request and,
/// unless `limits`, no rate limits.
pub fn start_sandbox(bin: &Path, contacts: usize, latency_ms: u64, limits: bool) -> SandboxProcess {
    let mut cmd = Command::new(bin);
    cmd.args([
        "sandbox",
        "--port",
        "0",
        "--contacts",
        &contacts.to_string(),
    ])
    .args(["--latency-ms", &latency_ms.to_string()])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if !limits {
        cmd.arg("--no-limits");
    }
    let mut child = cmd.spawn().expect("start the sandbox");
    let stdout = child.stdout.take().expect("sandbox stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("sandbox banner");
    let base_url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("base url in banner")
        .to_string();
    SandboxProcess { child, base_url }
}

/// A client for the sandbox's location: HighLevel's burst limit when `limited`, else none.
pub fn client(base_url: &str, limited: bool) -> Client {
    Client::new(ClientSettings {
        base_url: base_url.parse().expect("url"),
        api_version: "2021-07-28".into(),
        location_id: LOC.into(),
        credentials: ghl_mirror::upstream::Credentials::Static(SecretString::from(
            TOKEN.to_string(),
        )),
        timeout: Duration::from_secs(30),
        burst_max: if limited { 100 } else { 1_000_000 },
        interval: Duration::from_secs(10),
        safety_margin: Duration::from_millis(200),
        daily_reserve: 5_000,
        max_attempts: 6,
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(20),
    })
    .expect("client")
}

/// Flushes the dirty pages earlier phases left behind, so their writeback does not compete with
/// the next timed run.
pub fn settle_disk() {
    let _ = Command::new("sync").status();
}

/// This process's peak resident memory (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
