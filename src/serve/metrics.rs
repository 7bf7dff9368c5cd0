//! Prometheus metrics (prometheus-client, OpenMetrics text): the local API's requests and
//! latencies, kept in memory, and the mirror's rows and sync figures, read from the database at
//! each scrape.

use crate::store::Metrics;
use axum::http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    location: String,
    table: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    location: String,
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LocationLabels {
    location: String,
}

type Seconds = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The local API's own counters.
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Seconds,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl HttpMetrics {
    pub fn observe(&self, method: &Method, route: &str, status: StatusCode, took: Duration) {
        // Only standard methods become labels: any client could otherwise add series at will.
        let method = match *method {
            Method::GET
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::PATCH
            | Method::HEAD
            | Method::OPTIONS => method.as_str(),
            _ => "other",
        };
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: status.as_u16(),
            })
            .inc();
        self.seconds
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The exposition text: HTTP metrics plus the database's figures.
    pub fn render(&self, db: &Metrics) -> Result<String, std::fmt::Error> {
        let mut reg = Registry::with_prefix("ghl_mirror");
        reg.register(
            "http_requests",
            "Requests the local API answered, by route and status",
            self.requests.clone(),
        );
        reg.register(
            "http_request_duration_seconds",
            "Time the local API took to answer, by route",
            self.seconds.clone(),
        );
        let rows = Family::<RowLabels, Gauge>::default();
        for (location, table, live, gone) in &db.rows {
            for (state, n) in [("live", live), ("tombstoned", gone)] {
                rows.get_or_create(&RowLabels {
                    location: location.clone(),
                    table: table.to_string(),
                    state: state.into(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
        reg.register("rows", "Rows in the mirror, by table and state", rows);
        let duration = Family::<StreamLabels, Gauge<f64, AtomicU64>>::default();
        let last_success = Family::<StreamLabels, Gauge>::default();
        let requests = Family::<StreamLabels, Gauge>::default();
        let failed = Family::<StreamLabels, Gauge>::default();
        let quota = Family::<LocationLabels, Gauge>::default();
        for r in &db.runs {
            let l = StreamLabels {
                location: r.location_id.clone(),
                stream: r.stream.clone(),
            };
            duration.get_or_create(&l).set(r.duration_s);
            if let Some(ms) = r.last_success_ms {
                last_success.get_or_create(&l).set(ms / 1000);
            }
            requests
                .get_or_create(&l)
                .set(i64::try_from(r.requests_total).unwrap_or(i64::MAX));
            failed
                .get_or_create(&l)
                .set(i64::from(r.outcome == "failed"));
            if let Some(left) = r.daily_remaining {
                quota
                    .get_or_create(&LocationLabels {
                        location: r.location_id.clone(),
                    })
                    .set(left);
            }
        }
        reg.register(
            "sync_last_run_duration_seconds",
            "How long the last finished run of each stream took",
            duration,
        );
        reg.register(
            "sync_last_success_timestamp_seconds",
            "When each stream last finished successfully (Unix time)",
            last_success,
        );
        reg.register(
            "sync_upstream_requests",
            "HighLevel requests spent by each stream, all runs",
            requests,
        );
        reg.register(
            "sync_last_run_failed",
            "1 when the last finished run of the stream failed",
            failed,
        );
        reg.register(
            "upstream_daily_quota_remaining",
            "X-RateLimit-Daily-Remaining as last seen, per location",
            quota,
        );
        let mut out = String::new();
        encode(&mut out, &reg)?;
        Ok(out)
    }
}
