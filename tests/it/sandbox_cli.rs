//! `ghl-mirror sandbox` as a newcomer runs it: the config it prints works as printed.

use ghl_mirror::config::{Config, Env};
use std::io::BufRead;
use std::time::Duration;

struct NoEnv;
impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        Some("token".into())
    }
}

/// The config `sandbox <args>` prints, as printed.
async fn printed_config(args: &[&str]) -> String {
    let mut c = crate::cli::bin();
    c.args(["sandbox", "--port", "0", "--contacts", "10"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let text = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.starts_with("OAuth app") {
                break;
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let text = tokio::time::timeout(Duration::from_secs(30), text)
        .await
        .expect("the sandbox printed no config")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let start = text.find("[database]").expect("no config printed");
    text[start..].to_string()
}

#[tokio::test]
async fn sandbox_no_limits_prints_a_config_that_does_not_pace_the_client() {
    let printed = printed_config(&["--no-limits"]).await;
    // Every line of it starts at the margin, as a user would paste it.
    for line in printed.lines() {
        assert_eq!(
            line,
            line.trim_start(),
            "indented line in the printed config"
        );
    }
    let c = Config::from_toml(&printed, &NoEnv).unwrap();
    assert_eq!(c.upstream.burst_max, 10_000);
    assert_eq!(c.upstream.interval, Duration::from_secs(1));
    assert_eq!(c.upstream.safety_margin, Duration::ZERO);
    // With the limits on, the printed config keeps HighLevel's pace.
    let c = Config::from_toml(&printed_config(&[]).await, &NoEnv).unwrap();
    assert_eq!(c.upstream.burst_max, 100);
    assert_eq!(c.upstream.interval, Duration::from_secs(10));
}

#[tokio::test]
async fn the_sandbox_with_its_stdout_closed_serves_and_ends_on_sigterm_with_success() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (reader, writer) = std::io::pipe().unwrap();
    // The reader is gone before the banner is written.
    drop(reader);
    let mut c = crate::cli::bin();
    c.args(["sandbox", "--contacts", "10", "--port", &port.to_string()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let child = c.spawn().unwrap();
        // The sandbox is up (and its signal handlers in place) once its port answers.
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the sandbox never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
