//! Leadership of one controller's election: campaign until elected (or shut
//! down), retrying when the store fails.
//!
//! One election per controller, named after it, announcing the instance
//! id: with N instances each controller has its own leader, so they spread
//! across instances. Losing leadership is signalled by
//! [`Leadership::lost`] (the election key deleted, a keep-alive refused, or
//! no renewal for a whole TTL); the [`Manager`](crate::Manager) stops the
//! controller's reconciles at once when it fires and campaigns again.

use std::sync::Arc;
use std::time::Duration;

use sdc_docker_store::{Election, Leadership, Store};
use tokio::sync::{mpsc, watch};

use crate::backoff::BackoffPolicy;
use crate::runner::Trigger;

/// Campaign in `election` for `controller` until elected, or until
/// `shutdown` turns true (then `None`). Triggers arriving meanwhile are
/// dropped: a new leader queues every key anyway.
pub(crate) async fn campaign(
    store: &Arc<dyn Store>,
    controller: &str,
    instance_id: &str,
    ttl: Duration,
    renew: Option<Duration>,
    triggers: &mut mpsc::UnboundedReceiver<Trigger>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Leadership> {
    let mut election = Election::new(store.clone(), controller, ttl);
    if let Some(renew) = renew {
        election = election.renew_every(renew);
    }
    let retry = BackoffPolicy {
        initial: Duration::from_millis(100),
        max: ttl.max(Duration::from_millis(100)),
        jitter: 0.2,
    };
    let mut failures = 0;
    loop {
        // Dropping the campaign (on shutdown) revokes its lease in the
        // background, so a cancelled candidate leaves no key behind.
        let attempt = async {
            if failures > 0 {
                tokio::time::sleep(retry.delay(failures)).await;
            }
            election.campaign(instance_id).await
        };
        let drain = async {
            while triggers.recv().await.is_some() {}
            std::future::pending::<()>().await
        };
        tokio::select! {
            result = attempt => match result {
                Ok(leadership) => {
                    tracing::info!(controller, instance = instance_id, token = leadership.fence().token, "leading");
                    return Some(leadership);
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(controller, error = %e, "campaign failed; retrying");
                }
            },
            () = drain => unreachable!("drain never ends"),
            _ = shutdown.wait_for(|s| *s) => return None,
        }
    }
}
