//! The mirror's own routes: `/mirror/status` (per location and stream freshness),
//! `/mirror/search?q=` (ranked full-text search), `/metrics` (Prometheus) and `/health`.

use super::highlevel::{SEARCH_ONLY, reshape};
use super::params::QueryString;
use super::{Api, ApiError, json_response};
use crate::model::iso_from_ms;
use crate::model::now_ms;
use crate::store::TextQueryError;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// GET /mirror/status → every (location, stream): rows, watermark, last run, last success.
pub(super) async fn status(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let rows = api.heavy(|s| Ok(s.status()?)).await?;
    let streams: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "locationId": s.location_id,
                "locationName": s.location_name,
                "stream": s.stream,
                "live": s.live,
                "tombstoned": s.tombstoned,
                "watermark": s.watermark_ms.map(iso_from_ms),
                "sweepInProgress": s.sweep_in_progress,
                "lastSuccessAt": s.last_success_end,
                "requestsToday": s.requests_today,
                "dailyRemaining": s.daily_remaining,
                "lastRun": s.last_run.as_ref().map(|r| json!({
                    "id": r.id,
                    "mode": r.mode,
                    "startedAt": r.started_at,
                    "endedAt": r.ended_at,
                    "outcome": r.outcome,
                    "received": r.received,
                    "inserted": r.inserted,
                    "updated": r.updated,
                    "tombstoned": r.tombstoned,
                    "requests": r.requests,
                    "error": r.error,
                })),
            })
        })
        .collect();
    let body = json!({"generatedAt": iso_from_ms(now_ms()), "streams": streams});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// How long `/metrics` reuses the database's figures.
const METRICS_TTL: Duration = Duration::from_secs(10);

const SEARCH_DEFAULT_LIMIT: u64 = 20;
const SEARCH_MAX_LIMIT: u64 = 100;

/// GET /mirror/search?q=&locationId=&limit= → `{"query","count","results":[{score, locationId,
/// contact}]}`, best match first.
pub(super) async fn search(
    State(api): State<Arc<Api>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryString::parse(raw.as_deref());
    let mut errors = Vec::new();
    let text = q.text("q").unwrap_or_default().to_string();
    if text.is_empty() {
        errors.push("q should not be empty: pass the words to look for, e.g. ?q=jane".into());
    }
    let limit = q.int(
        "limit",
        SEARCH_DEFAULT_LIMIT,
        (1, SEARCH_MAX_LIMIT),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors));
    }
    let location = q.text("locationId").map(str::to_string);
    let wanted = text.clone();
    let (hits, pending) = api
        .heavy(move |s| {
            let pending = s.text_pending()?;
            s.search_text(location.as_deref(), &wanted, limit as usize)
                .map(|hits| (hits, pending))
                .map_err(|e| match e {
                    TextQueryError::Empty => ApiError::unprocessable(vec![format!(
                        "q has no letters or digits to look for; got {wanted:?}"
                    )]),
                    TextQueryError::Store(e) => e.into(),
                })
        })
        .await?;
    let results: Vec<TextResult<'_>> = hits
        .hits
        .iter()
        .filter_map(|h| {
            let contact = reshape(&h.raw, &SEARCH_ONLY, None);
            Some(TextResult {
                score: h.score,
                location_id: &h.location_id,
                contact: RawValue::from_string(contact).ok()?,
            })
        })
        .collect();
    let body = TextResults {
        query: &text,
        count: results.len(),
        ranked: hits.ranked,
        complete: hits.complete,
        pending,
        results,
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| ApiError::unavailable(format!("cannot render the results: {e}")))?;
    Ok(json_response(StatusCode::OK, body))
}

/// `/mirror/search`'s body; contacts are the stored JSON, verbatim.
#[derive(Serialize)]
struct TextResults<'a> {
    query: &'a str,
    count: usize,
    /// How many matches the results were chosen from: the newest ones, at most 2,000.
    ranked: usize,
    /// False when more contacts match than were ranked (more words narrow the search).
    complete: bool,
    /// Contacts changed since the index last caught up (searchable as they were until then).
    pending: u64,
    results: Vec<TextResult<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TextResult<'a> {
    score: f64,
    location_id: &'a str,
    contact: Box<RawValue>,
}

/// GET /metrics → OpenMetrics text.
pub(super) async fn metrics(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let db = {
        // One read per METRICS_TTL however often (and however many) scrapers come.
        let mut cached = api.db_metrics.lock().await;
        match cached.as_ref() {
            Some((at, m)) if at.elapsed() < METRICS_TTL => m.clone(),
            _ => {
                let m = Arc::new(api.heavy(|s| Ok(s.metrics()?)).await?);
                *cached = Some((Instant::now(), m.clone()));
                m
            }
        }
    };
    let text = api
        .metrics
        .render(&db)
        .map_err(|e| ApiError::unavailable(format!("cannot render metrics: {e}")))?;
    let mut resp = Response::new(axum::body::Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

/// GET /health → 200 when the database answers, else 503.
pub(super) async fn health(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    // Inline: a health check must answer even while every search slot is taken.
    let locations = api.store.location_ids()?;
    let body = json!({"status": "ok", "locations": locations.len()});
    Ok(json_response(StatusCode::OK, body.to_string()))
}
