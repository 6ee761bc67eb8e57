//! Where finished requests go: the spend ledger, the access log and the trace exporter, each a
//! background thread fed through a bounded queue. Started once (their settings need a restart);
//! SIGHUP reopens the access log file, for rotation by rename.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::access_log::{AccessLog, Output};
use super::metrics::{sync_counter, Metrics};
use super::trace::{Exporter, OtlpConfig};
use crate::config::snapshot::AccessLog as AccessLogSetting;
use crate::config::Snapshot;
use crate::usage::ledger::{open_reader, Ledger, LedgerConfig, SpendReader};

#[derive(Clone, Default)]
pub struct Sinks {
    pub ledger: Option<Ledger>,
    /// Reads the ledger for `/admin/spend` (its own connection).
    pub spend: Option<Arc<SpendReader>>,
    pub access_log: Option<AccessLog>,
    pub tracer: Option<Exporter>,
}

impl Sinks {
    /// Opens the ledger (running its migrations), the access log and the exporter. An error
    /// names the setting that failed.
    pub fn start(snap: &Snapshot) -> Result<Sinks, String> {
        let u = &snap.usage;
        let (ledger, spend) = match &u.ledger {
            None => (None, None),
            Some(url) => {
                let cfg = LedgerConfig {
                    url: url.expose().to_string(),
                    queue_capacity: u.queue,
                    batch_size: u.batch,
                    flush_interval: u.flush_interval,
                    spill_dir: u.spill_dir.clone(),
                    ..LedgerConfig::default()
                };
                let ledger = Ledger::start(cfg).map_err(|e| format!("usage.ledger: {e}"))?;
                let reader = open_reader(url.expose()).map_err(|e| format!("usage.ledger: {e}"))?;
                (Some(ledger), Some(Arc::new(reader)))
            }
        };
        let output = match &u.access_log {
            AccessLogSetting::Off => None,
            AccessLogSetting::Stdout => Some(Output::Stdout),
            AccessLogSetting::Stderr => Some(Output::Stderr),
            AccessLogSetting::File(p) => Some(Output::File(p.clone())),
        };
        let access_log = match output {
            None => None,
            Some(o) => Some(AccessLog::start(o).map_err(|e| format!("usage.access_log: {e}"))?),
        };
        let tracer = match &snap.tracing {
            None => None,
            Some(t) => Some(
                Exporter::start(OtlpConfig {
                    endpoint: t.endpoint.clone(),
                    headers: t
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_string()))
                        .collect(),
                    service_name: t.service_name.clone(),
                    ..OtlpConfig::default()
                })
                .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?,
            ),
        };
        Ok(Sinks {
            ledger,
            spend,
            access_log,
            tracer,
        })
    }

    /// Copies the sinks' own counters into Prometheus (when `/metrics` is rendered).
    pub fn sync_metrics(&self, m: &Metrics) {
        let s = &m.sinks;
        let _serial = s.sync.lock();
        if let Some(l) = &self.ledger {
            let st = l.stats();
            s.ledger_queue_depth.set(st.waiting() as i64);
            s.ledger_spill_pending
                .set(st.spill_pending.load(Ordering::Relaxed) as i64);
            s.ledger_store_up.set(i64::from(st.store_up.load(Ordering::Relaxed)));
            sync_counter(&s.ledger_written, st.written.load(Ordering::Relaxed));
            sync_counter(&s.ledger_spilled, st.spilled.load(Ordering::Relaxed));
            sync_counter(&s.ledger_replayed, st.replayed.load(Ordering::Relaxed));
            sync_counter(&s.ledger_dropped, st.dropped.load(Ordering::Relaxed));
            sync_counter(&s.ledger_write_errors, st.write_errors.load(Ordering::Relaxed));
        }
        if let Some(a) = &self.access_log {
            sync_counter(&s.access_log_dropped, a.stats().dropped.load(Ordering::Relaxed));
        }
        if let Some(t) = &self.tracer {
            let st = t.stats();
            sync_counter(&s.spans_exported, st.exported.load(Ordering::Relaxed));
            sync_counter(&s.spans_dropped, st.dropped.load(Ordering::Relaxed));
        }
    }

    /// Reopens the access log file (after `logrotate` renamed it). Does not wait for the writer
    /// thread, so it is safe on an event loop.
    pub fn reopen(&self) {
        if let Some(a) = &self.access_log {
            a.reopen();
        }
    }

    /// Reopens the access log on every SIGHUP until `until` completes (the config watcher reloads
    /// on the same signal; tokio delivers it to both).
    pub async fn reopen_on_hangup<F: std::future::Future>(&self, until: F) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for SIGHUP, the access log is never reopened: {e}");
                until.await;
                return;
            }
        };
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return,
                got = hup.recv() => match got {
                    Some(()) => self.reopen(),
                    None => {
                        until.await;
                        return;
                    }
                },
            }
        }
    }

    /// Waits until what was submitted is written (or spilled). Blocking: call off the event loop.
    pub fn flush(&self, timeout: Duration) {
        if let Some(l) = &self.ledger {
            if !l.flush(timeout) {
                let waiting = l.stats().waiting();
                tracing::warn!(store = %l.store_name(), records = waiting, "spend ledger: records neither written nor spilled in time");
            }
        }
        if let Some(a) = &self.access_log {
            a.flush(timeout);
        }
        if let Some(t) = &self.tracer {
            t.flush(timeout);
        }
    }
}
