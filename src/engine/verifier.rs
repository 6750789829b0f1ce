//! Verification in the daemon: at most one run at a time, requests coalesced.
//!
//! The engine asks for a run after each sync that changed something, after the first good
//! sync, and after each completed rollout; `POST /verify` asks with a reply channel. Requests
//! that arrive during a run are served by exactly one run after it, and a reply always carries
//! a report of a run that started after the request. An automatic run that fails is retried
//! with backoff for `verify.settle_ms`, because the gateway receives new routes a moment after
//! they are applied; a requested run reports at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::Status;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::events::{Events, Kind};
use crate::telemetry::{Metrics, ResultLabel};
use crate::verify::Report;

const RETRY_START: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Pending {
    trigger: Option<String>,
    requested: bool,
    replies: Vec<oneshot::Sender<Report>>,
}

/// The coalescing queue between the requesters and the verifier task.
#[derive(Default)]
pub struct VerifyQueue {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl VerifyQueue {
    /// Asks for a run; `reply` gets its report. A run with a reply reports at once, unless
    /// every reply asked it to `settle` (retried within `verify.settle_ms` as the automatic
    /// runs are, for a check made right after a change).
    pub fn request(&self, why: &str, reply: Option<oneshot::Sender<Report>>, settle: bool) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.trigger.is_none() || reply.is_some() {
            p.trigger = Some(why.to_string());
        }
        if let Some(r) = reply {
            p.requested |= !settle;
            p.replies.push(r);
        }
        drop(p);
        self.notify.notify_one();
    }

    fn take(&self) -> Option<(String, bool, Vec<oneshot::Sender<Report>>)> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let trigger = p.trigger.take()?;
        let requested = std::mem::take(&mut p.requested);
        Some((trigger, requested, std::mem::take(&mut p.replies)))
    }

    /// Hands `replies` to the run that is due, if one is; false (and `replies` kept) if none.
    fn carry_over(&self, replies: &mut Vec<oneshot::Sender<Report>>) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.trigger.is_none() {
            return false;
        }
        p.replies.append(replies);
        true
    }

    fn has_pending(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .trigger
            .is_some()
    }
}

pub struct Verifier {
    pub queue: Arc<VerifyQueue>,
    pub status: watch::Sender<Status>,
    pub events: Events,
    pub cluster: Cluster,
    pub config: Config,
    pub metrics: Metrics,
}

impl Verifier {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.queue.notify.notified() => {}
            }
            while let Some((trigger, requested, mut replies)) = self.queue.take() {
                let span = info_span!("verify", trigger = %trigger);
                let report = tokio::select! {
                    r = self.settled(&trigger, requested).instrument(span) => r,
                    _ = shutdown.cancelled() => return,
                };
                self.metrics
                    .verifications
                    .get_or_create(&ResultLabel {
                        result: if report.ok { "pass" } else { "fail" },
                    })
                    .inc();
                self.status.send_modify(|s| {
                    s.verifying = false;
                    s.verifications += 1;
                    s.verification = Some(report.clone());
                });
                self.events.publish(Kind::Verification, &report);
                // A settling run that failed while another is due (a sync since) leaves its
                // replies to that one: they asked for the verification of a settled state.
                if !report.ok && !requested && self.queue.carry_over(&mut replies) {
                    continue;
                }
                for r in replies {
                    let _ = r.send(report.clone());
                }
            }
        }
    }

    /// One run, retried while it fails within the settle window (automatic runs only).
    async fn settled(&self, trigger: &str, requested: bool) -> Report {
        // The routes come from the last sync: wait for the first one.
        let _ = self
            .status
            .subscribe()
            .wait_for(|s| s.last_sync.is_some())
            .await;
        self.status.send_modify(|s| s.verifying = true);
        let start = Instant::now();
        let settle = Duration::from_millis(self.config.verify.settle_ms);
        let mut wait = RETRY_START;
        loop {
            let report = self.once(trigger).await;
            let retry = !report.ok
                && !requested
                && start.elapsed() + wait < settle
                && !self.queue.has_pending();
            if !retry {
                self.log(&report);
                return report;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    async fn once(&self, trigger: &str) -> Report {
        let inputs = self.status.borrow().inputs.clone();
        let config_file = self
            .config
            .file
            .as_ref()
            .map(|f| self.config.display_path(f).into_owned());
        crate::verify::run(crate::verify::Input {
            objects: &inputs.objects,
            others: &inputs.others,
            ingress: &self.config.ingress,
            checks: &self.config.checks,
            settings: &self.config.verify,
            config_file,
            cluster: Some(&self.cluster),
            trigger,
        })
        .await
    }

    fn log(&self, report: &Report) {
        if report.ok {
            info!("{}", report.summary());
            return;
        }
        warn!("{}", report.summary());
        for p in report.probes.iter().filter(|p| !p.ok) {
            if let Some(d) = &p.diagnosis {
                warn!(
                    probe = %p.name,
                    "{}: broken hop {}: {}",
                    p.name, d.hop, d.summary
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_coalesce_into_one_run_and_every_reply_is_kept() {
        let q = VerifyQueue::default();
        assert!(q.take().is_none());
        q.request("routing changed", None, false);
        let (tx1, _rx1) = oneshot::channel();
        let (tx2, _rx2) = oneshot::channel();
        q.request("request", Some(tx1), false);
        q.request("rollout complete", None, false);
        q.request("request", Some(tx2), true);
        let (trigger, requested, replies) = q.take().expect("one run is due");
        assert_eq!(trigger, "request", "a requested run says so");
        assert!(requested);
        assert_eq!(replies.len(), 2);
        assert!(q.take().is_none(), "one run serves them all");
        q.request("rollout complete", None, false);
        let (trigger, requested, replies) = q.take().unwrap();
        assert_eq!(trigger, "rollout complete");
        assert!(!requested && replies.is_empty());

        // Replies of a failed settling run go to the run that is due, if any.
        let (tx4, _rx4) = oneshot::channel();
        let mut carried = vec![tx4];
        assert!(!q.carry_over(&mut carried), "no run is due");
        assert_eq!(carried.len(), 1);
        q.request("routing changed", None, false);
        assert!(q.carry_over(&mut carried));
        let (trigger, requested, replies) = q.take().unwrap();
        assert_eq!(
            (trigger.as_str(), requested, replies.len()),
            ("routing changed", false, 1)
        );
        // A run only settling replies wait for retries, as an automatic run does.
        let (tx3, _rx3) = oneshot::channel();
        q.request("request", Some(tx3), true);
        let (_, requested, replies) = q.take().unwrap();
        assert!(!requested && replies.len() == 1);
    }
}
