//! `GET /v1/watch?from=N`: committed entries as server-sent events.
//!
//! A producer task reads the node's [`crate::ChangeStream`] and hands each
//! event to the response body through a small bounded channel. The split is
//! what lets a slow reader be cut off: the body is only polled as fast as
//! the client reads, so only the producer can notice that an event has
//! waited [`super::HttpConfig::watch_stall`] for room. It then ends the
//! stream with a final `cutoff` event that says where to resume. The node
//! never waits for a reader: the change stream reads the WAL on demand, and
//! the producer holds one event at a time.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::stream;
use metawal::Entry;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::error::changes_error;
use super::{ApiData, ApiError};
use crate::metrics::NodeMetrics;

/// Events buffered between the producer and the response body.
const EVENT_QUEUE: usize = 16;

#[derive(Debug, Deserialize)]
struct WatchQuery {
    from: Option<u64>,
}

/// One open watch stream, counted against `max_watchers` until dropped.
struct WatcherSlot {
    api: ApiData,
    metrics: NodeMetrics,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.api.watchers.fetch_sub(1, Ordering::AcqRel);
        self.metrics.watchers_add(-1);
    }
}

fn entry_event(e: &Entry) -> web::Bytes {
    // Entries are plain data: serialising them cannot fail.
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    web::Bytes::from(format!("id: {}\nevent: entry\ndata: {data}\n\n", e.offset))
}

fn final_event(kind: &str, data: serde_json::Value) -> web::Bytes {
    web::Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

pub(crate) async fn watch(req: HttpRequest, api: ApiData) -> Result<HttpResponse, ApiError> {
    let q: WatchQuery = super::query(&req)?;
    let view = api.node.view();
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let from = q
        .from
        .or(last_event_id.map(|id| id.saturating_add(1)))
        .unwrap_or(view.applied_offset() + 1)
        .max(1);

    let open = api.watchers.fetch_add(1, Ordering::AcqRel);
    let metrics = api.node.metrics().clone();
    metrics.watchers_add(1);
    let slot = WatcherSlot {
        api: api.clone(),
        metrics: metrics.clone(),
    };
    if open >= api.config.max_watchers {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_watchers",
            format!("{} watch streams are open, the most this node serves; retry later or watch another node", api.config.max_watchers),
        ));
    }
    let log_start = api
        .node
        .log_start()
        .await
        .map_err(|e| super::error::node_stopped(&e))?;
    if from < log_start {
        return Err(super::error::compacted(
            log_start,
            view.applied_offset(),
            format!("offset {from} is below the log start {log_start}: those entries were compacted into a snapshot; load GET /v1/snapshot and watch from its offset + 1"),
        ));
    }

    let (tx, rx) = mpsc::channel::<web::Bytes>(EVENT_QUEUE);
    // The final event, set by the producer when it ends the stream.
    let last: Arc<Mutex<Option<web::Bytes>>> = Arc::new(Mutex::new(None));
    let mut changes = api.node.changes_from(from);
    let (stall, keep_alive) = (api.config.watch_stall, api.config.watch_keep_alive);
    let node = api.node.id();
    let last_for_producer = last.clone();
    actix_rt::spawn(async move {
        let end = loop {
            let (event, offset) = tokio::select! {
                next = changes.next() => match next {
                    Ok(entry) => (entry_event(&entry), entry.offset),
                    Err(e) => {
                        let api_error = changes_error(&e, view.applied_offset());
                        break Some(final_event("error", json!({
                            "error": api_error.code,
                            "message": api_error.message,
                            "detail": api_error.detail,
                            "resume_from": changes.position(),
                        })));
                    }
                },
                () = tokio::time::sleep(keep_alive) => {
                    (web::Bytes::from_static(b": keep-alive\n\n"), changes.position())
                }
            };
            match tokio::time::timeout(stall, tx.send(event)).await {
                Ok(Ok(())) => {}
                // The client went away: nothing to tell it.
                Ok(Err(_)) => break None,
                Err(_) => {
                    // Cut off (bounded: the reader had `stall` to take one
                    // event). The reader still gets what is queued, then
                    // the final event; it resumes at the event that did not
                    // fit.
                    metrics.watch_cut_off();
                    tracing::info!(
                        node,
                        offset = changes.position(),
                        "watch reader cut off: it took no event for {stall:?}"
                    );
                    break Some(final_event(
                        "cutoff",
                        json!({
                            "reason": format!("the reader took no event for {} ms", stall.as_millis()),
                            "resume_from": offset,
                        }),
                    ));
                }
            }
        };
        if let Ok(mut slot) = last_for_producer.lock() {
            *slot = end;
        }
    });

    let body = stream::unfold((rx, last, Some(slot)), |(mut rx, last, slot)| async move {
        let slot = slot?;
        match rx.recv().await {
            Some(event) => Some((Ok::<_, actix_web::Error>(event), (rx, last, Some(slot)))),
            None => {
                let end = last.lock().ok().and_then(|mut l| l.take());
                // Yield the final event (if any); the slot is released
                // when the stream ends.
                end.map(|e| (Ok(e), (rx, last, None)))
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
