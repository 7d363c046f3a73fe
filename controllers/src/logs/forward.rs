//! The forwarding loop of one container: a [`LogFollower`] feeding a bounded
//! buffer, drained by a sender that hands each line to an [`Endpoint`] and
//! then records the line's position in the [`Checkpoint`].
//!
//! The follower never waits for the endpoint, as Docker's `mode=non-blocking`
//! logging does: when the buffer is full (the endpoint is down or slow) the
//! line is dropped and counted ([`ForwardStats::dropped`]), with a warning.
//! A failed send is retried with backoff (100 ms doubling to 5 s) while the
//! buffer fills. Only what was sent is checkpointed, so a daemon restart
//! resends what was buffered; a crash (no final flush) can resend what was
//! sent in the last second. Forwarding is therefore at-least-once across
//! restarts and lossy while an endpoint stays down; the host log keeps
//! everything regardless.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::follow::{Checkpoint, FollowError, LogFollower, LogLine};

/// Where lines go: a syslog server, a GELF input, a fluentd.
#[async_trait::async_trait]
pub trait Endpoint: Send {
    /// Sends one line. An error means it may not have been sent; the
    /// endpoint drops its connection and the line is tried again after a
    /// backoff.
    async fn send(&mut self, line: &LogLine) -> std::io::Result<()>;
}

/// What a forwarding loop has done so far.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Lines handed to the endpoint.
    pub sent: AtomicU64,
    /// Lines dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Sends that failed (and were retried).
    pub failures: AtomicU64,
}

/// How the loop should run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Follow the log for new lines.
    Follow,
    /// Forward what is in the log, then end (the container is not running).
    Drain,
    /// End now, saving the position of what was sent.
    Stop,
}

/// Tuning of a forwarding loop.
#[derive(Clone, Debug)]
pub struct ForwardOptions {
    /// Lines buffered between the follower and the sender.
    pub buffer_lines: usize,
    /// First retry delay after a failed send.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Default for ForwardOptions {
    /// 4096 lines; retries from 100 ms to 5 s.
    fn default() -> Self {
        ForwardOptions {
            buffer_lines: 4096,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// Forwards the log `follower` reads to `endpoint` until `mode` says
/// [`Mode::Stop`] (or its sender is dropped), or, in [`Mode::Drain`], until
/// everything written so far has been handed over. The checkpoint is
/// flushed on the way out.
pub async fn forward(
    mut follower: LogFollower,
    mut checkpoint: Checkpoint,
    mut endpoint: Box<dyn Endpoint>,
    options: ForwardOptions,
    mode: watch::Receiver<Mode>,
    stats: Arc<ForwardStats>,
) -> Result<(), FollowError> {
    let (tx, mut rx) = mpsc::channel::<LogLine>(options.buffer_lines.max(1));
    let reader = {
        let mut mode = mode.clone();
        let stats = stats.clone();
        async move {
            // `tx` is dropped when reading ends, which lets the sender finish.
            let tx = tx;
            loop {
                let current = *mode.borrow_and_update();
                let line = match current {
                    Mode::Stop => return Ok(()),
                    Mode::Drain => match follower.read_line().await? {
                        Some(line) => line,
                        None => return Ok(()),
                    },
                    Mode::Follow => tokio::select! {
                        line = follower.next_line() => line?,
                        changed = mode.changed() => {
                            if changed.is_err() {
                                return Ok(());
                            }
                            continue;
                        }
                    },
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(line) {
                    let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if dropped.is_power_of_two() {
                        tracing::warn!(log = %follower.path().display(), dropped, "log forwarding buffer full; dropping lines");
                    }
                }
            }
        }
    };
    let sender = {
        let mut mode = mode.clone();
        let checkpoint = &mut checkpoint;
        async move {
            let stopped = |mode: &watch::Receiver<Mode>| {
                *mode.borrow() == Mode::Stop || mode.has_changed().is_err()
            };
            loop {
                // Save the last position when the log goes quiet.
                let line = match tokio::time::timeout(Checkpoint::EVERY, rx.recv()).await {
                    Ok(Some(line)) => line,
                    Ok(None) => return Ok::<(), FollowError>(()),
                    Err(_) => {
                        checkpoint.flush().await?;
                        continue;
                    }
                };
                let mut delay = options.retry_min;
                loop {
                    if stopped(&mode) {
                        return Ok(());
                    }
                    // A send can hang (a connect to a silent host, a server
                    // that stops reading): a stop must not wait for it.
                    let result = tokio::select! {
                        result = endpoint.send(&line) => result,
                        () = until_stopped(&mut mode) => return Ok(()),
                    };
                    match result {
                        Ok(()) => {
                            stats.sent.fetch_add(1, Ordering::Relaxed);
                            checkpoint.record(line.position).await?;
                            break;
                        }
                        Err(e) => {
                            let failures = stats.failures.fetch_add(1, Ordering::Relaxed) + 1;
                            if failures.is_power_of_two() {
                                tracing::warn!(error = %e, failures, "log forwarding failed; retrying");
                            }
                            tokio::select! {
                                () = tokio::time::sleep(delay) => {}
                                () = until_stopped(&mut mode) => return Ok(()),
                            }
                            delay = (delay * 2).min(options.retry_max);
                        }
                    }
                }
            }
        }
    };
    let (read, sent) = tokio::join!(reader, sender);
    let flushed = checkpoint.flush().await;
    read.and(sent).and(flushed)
}

/// Returns once `mode` says [`Mode::Stop`] or its sender is gone.
async fn until_stopped(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m == Mode::Stop).await;
}
