//! What `sync` shows while it works. On a terminal: a bar per location whose message says what
//! is being done, at what rate and about how long is left. Elsewhere (a cron log): plain lines,
//! one when a stream starts and one every `every` while it runs. The summary lines on stdout
//! are printed at the end either way.

use crate::model::SubKind;
use crate::sync::{Observer, SubPlan, SyncEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rates seen are trusted for an ETA after this long (before, the pace stands in).
const WARM_UP: Duration = Duration::from_secs(1);

pub(super) struct ProgressUi {
    multi: Option<MultiProgress>,
    every: Duration,
    runs: Arc<Mutex<HashMap<String, Run>>>,
}

/// One location's current stream.
struct Run {
    bar: Option<ProgressBar>,
    mode: &'static str,
    started: Instant,
    last_line: Instant,
    total: u64,
    done: u64,
    requests: u64,
    plan: Option<SubPlan>,
}

impl Run {
    fn lists(&self) -> bool {
        self.mode == "subresources"
    }

    fn unit(&self) -> &'static str {
        if self.lists() { "lists" } else { "contacts" }
    }

    /// "1,234/5,000 lists, 20 requests · 12 lists/s, 9.8 requests/s · about 2m 10s left".
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mut out = format!("{}/{} {}", count(self.done), count(self.total), self.unit());
        if self.requests > 0 {
            out.push_str(&format!(", {} requests", count(self.requests)));
        }
        out.push_str(&format!(
            " · {} {}/s, {} requests/s",
            rate(self.done as f64 / secs),
            self.unit(),
            rate(self.requests as f64 / secs)
        ));
        if let Some(eta) = self.eta() {
            out.push_str(&format!(" · about {} left", duration(eta)));
        }
        out
    }

    /// How long the rest of this run should take: what is left at the rate seen so far, and
    /// for sub-resources no longer than the budget left lasts at that rate. Early on, before
    /// the rate means much, sub-resources go by the requests planned at the pace.
    fn eta(&self) -> Option<Duration> {
        let elapsed = self.started.elapsed();
        let secs = elapsed.as_secs_f64();
        let left = self.total.saturating_sub(self.done);
        if left == 0 && self.done > 0 {
            return None;
        }
        if elapsed < WARM_UP || self.done == 0 {
            let p = self.plan.as_ref()?;
            let to_make = p
                .requests_wanted
                .min(p.budget)
                .saturating_sub(self.requests);
            let per_sec = pace_per_sec(p);
            return (per_sec > 0.0).then(|| Duration::from_secs_f64(to_make as f64 / per_sec));
        }
        let mut eta = left as f64 / (self.done as f64 / secs);
        if let Some(p) = self.plan.as_ref().filter(|_| self.requests > 0) {
            let budget_left = p.budget.saturating_sub(self.requests) as f64;
            eta = eta.min(budget_left / (self.requests as f64 / secs));
        }
        Some(Duration::from_secs_f64(eta))
    }
}

fn pace_per_sec(p: &SubPlan) -> f64 {
    f64::from(p.pace_requests) / p.pace_window.as_secs_f64().max(0.001)
}

/// "2,000 tasks, 2,000 notes and 2,000 appointments lists due; about 4,057 requests (budget
/// 5,000) at up to 100 requests per 10.2s: about 6m 54s".
pub(super) fn plan_line(p: &SubPlan) -> String {
    let due: Vec<String> = p
        .due
        .iter()
        .map(|(k, n)| format!("{} {}", count(*n), kind_name(*k)))
        .collect();
    let to_make = p.requests_wanted.min(p.budget);
    let mut out = format!(
        "{} lists due; about {} requests",
        join(&due),
        count(p.requests_wanted)
    );
    if p.budget < u64::MAX {
        out.push_str(&format!(" (budget {})", count(p.budget)));
    }
    out.push_str(&format!(
        " at up to {} requests per {}",
        count(u64::from(p.pace_requests)),
        duration(p.pace_window)
    ));
    let per_sec = pace_per_sec(p);
    if per_sec > 0.0 && to_make > 0 {
        out.push_str(&format!(
            ": about {} at that pace",
            duration(Duration::from_secs_f64(to_make as f64 / per_sec))
        ));
    }
    if p.requests_wanted > p.budget {
        out.push_str("; the budget covers part of it, the next runs continue");
    }
    out
}

fn kind_name(k: SubKind) -> &'static str {
    k.as_str()
}

fn join(items: &[String]) -> String {
    match items {
        [] => "no".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// 1234567 -> "1,234,567".
pub(super) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with about two significant digits: "0.4", "9.8", "38", "1,200".
fn rate(r: f64) -> String {
    if !r.is_finite() || r <= 0.0 {
        "0".into()
    } else if r < 10.0 {
        format!("{r:.1}")
    } else {
        count(r.round() as u64)
    }
}

/// "45s", "2m 10s", "1h 05m"; under 10 s with a tenth.
pub(super) fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        let s = format!("{secs:.1}");
        return format!("{}s", s.trim_end_matches(".0"));
    }
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

impl ProgressUi {
    /// Bars on a terminal; otherwise plain lines every `every`.
    pub(super) fn new(terminal: bool, every: Duration) -> ProgressUi {
        ProgressUi {
            multi: terminal.then(MultiProgress::new),
            every,
            runs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub(super) fn observer(&self) -> Observer {
        let multi = self.multi.clone();
        let every = self.every;
        let runs = self.runs.clone();
        Arc::new(move |ev: SyncEvent| {
            let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
            on_event(multi.as_ref(), every, &mut runs, ev);
        })
    }

    pub(super) fn finish(&self) {
        for r in self.runs.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if let Some(b) = &r.bar {
                b.finish_and_clear();
            }
        }
    }
}

/// Says something: above the bars on a terminal, as a line on stderr otherwise.
fn say(multi: Option<&MultiProgress>, text: String) {
    match multi {
        Some(m) => {
            let _ = m.println(text);
        }
        None => eprintln!("{text}"),
    }
}

fn on_event(
    multi: Option<&MultiProgress>,
    every: Duration,
    runs: &mut HashMap<String, Run>,
    ev: SyncEvent,
) {
    match ev {
        SyncEvent::Started { location, mode } => {
            let bar = multi.map(|m| {
                let bar = m.add(ProgressBar::new(0));
                let style =
                    ProgressStyle::with_template("{prefix} [{bar:30}] {msg} · {elapsed} elapsed")
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_prefix(format!("{location} {mode}"));
                bar
            });
            let now = Instant::now();
            let run = Run {
                bar,
                mode,
                started: now,
                last_line: now,
                total: 0,
                done: 0,
                requests: 0,
                plan: None,
            };
            if multi.is_none() {
                eprintln!("{location} {mode}: started");
            }
            if let Some(b) = runs.insert(location, run).and_then(|old| old.bar) {
                b.finish_and_clear();
            }
        }
        SyncEvent::Plan { location, plan } => {
            say(
                multi,
                format!("{location} subresources: {}", plan_line(&plan)),
            );
            if let Some(r) = runs.get_mut(&location) {
                r.plan = Some(plan);
                update(r);
            }
        }
        SyncEvent::Total { location, total } => {
            if let Some(r) = runs.get_mut(&location).filter(|r| r.total < total) {
                r.total = total;
                if let Some(b) = &r.bar {
                    b.set_length(total);
                }
                update(r);
            }
        }
        SyncEvent::Page {
            location,
            contacts,
            requests,
        } => {
            let Some(r) = runs.get_mut(&location) else {
                return;
            };
            r.done += contacts;
            r.requests = requests;
            r.total = r.total.max(r.done);
            if let Some(b) = &r.bar {
                b.set_length(r.total);
                b.set_position(r.done);
            }
            update(r);
            if multi.is_none() && r.last_line.elapsed() >= every {
                r.last_line = Instant::now();
                eprintln!("{location} {}: {}", r.mode, r.line());
            }
        }
    }
}

/// Refreshes a bar's message.
fn update(r: &Run) {
    if let Some(b) = &r.bar {
        b.set_message(r.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_rates_and_durations_read_like_a_person_would_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(rate(0.44), "0.4");
        assert_eq!(rate(37.6), "38");
        assert_eq!(duration(Duration::from_millis(4_300)), "4.3s");
        assert_eq!(duration(Duration::from_secs(2)), "2s");
        assert_eq!(duration(Duration::from_secs(130)), "2m 10s");
        assert_eq!(duration(Duration::from_secs(3_900)), "1h 05m");
    }

    #[test]
    fn the_plan_says_what_is_due_what_it_costs_and_how_long_it_takes() {
        let p = SubPlan {
            due: vec![
                (SubKind::Tasks, 2_000),
                (SubKind::Notes, 2_000),
                (SubKind::Appointments, 2_000),
            ],
            requests_wanted: 4_058,
            budget: 5_000,
            pace_requests: 100,
            pace_window: Duration::from_secs(10),
        };
        assert_eq!(
            plan_line(&p),
            "2,000 tasks, 2,000 notes and 2,000 appointments lists due; about 4,058 requests \
             (budget 5,000) at up to 100 requests per 10s: about 6m 45s at that pace"
        );
        let small = SubPlan { budget: 150, ..p };
        assert!(
            plan_line(&small).ends_with(
                "about 15s at that pace; the budget covers part of it, the next runs continue"
            ),
            "{}",
            plan_line(&small)
        );
    }
}
