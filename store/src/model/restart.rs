//! What a restart policy says to do, as the seeds' "Restart Policies"
//! describe it: when a container's process exits, and when its node comes
//! back from a reboot with every process gone.
//!
//! These are the rules only; the restart-policy controller applies them
//! with the exit records the zone driver reports, and counts restarts in
//! the Container's status.

use std::time::Duration;

use super::container::{RestartPolicy, RestartPolicyName};

/// The first restart's delay; each further one doubles it.
pub const RESTART_BASE_DELAY: Duration = Duration::from_millis(100);

/// The longest delay between restarts. The seeds give no bound; Docker's
/// restart manager stops doubling at one minute, and so do we, so a
/// container that failed for a day is still retried every minute.
pub const RESTART_MAX_DELAY: Duration = Duration::from_secs(60);

impl RestartPolicy {
    /// Whether a process that exited with `exit_code`, after
    /// `restart_count` automatic restarts, is started again. A container the
    /// user stopped (`docker stop`, `docker kill`) is never restarted.
    pub fn restarts_after_exit(
        &self,
        exit_code: i64,
        restart_count: i64,
        stopped_by_user: bool,
    ) -> bool {
        if stopped_by_user {
            return false;
        }
        match self.name {
            RestartPolicyName::No => false,
            RestartPolicyName::Always | RestartPolicyName::UnlessStopped => true,
            RestartPolicyName::OnFailure => {
                exit_code != 0
                    && (self.maximum_retry_count <= 0 || restart_count < self.maximum_retry_count)
            }
        }
    }

    /// Whether the container is started when its node boots (every process
    /// gone): `always` and `unless-stopped` when it was running at the
    /// reboot; `on-failure` only when its process exited non-zero as part
    /// of the reboot (`exit_code`, when one was recorded); `no` never.
    pub fn starts_on_boot(&self, was_running: bool, exit_code: Option<i64>) -> bool {
        match self.name {
            RestartPolicyName::No => false,
            RestartPolicyName::Always | RestartPolicyName::UnlessStopped => was_running,
            RestartPolicyName::OnFailure => exit_code.is_some_and(|code| code != 0),
        }
    }
}

/// The delay before restart number `restart_count + 1`:
/// `2^restart_count × 100 ms` (100, 200, 400 ms, …), at most
/// [`RESTART_MAX_DELAY`].
pub fn restart_delay(restart_count: i64) -> Duration {
    let exponent = u32::try_from(restart_count.max(0))
        .unwrap_or(u32::MAX)
        .min(20);
    RESTART_BASE_DELAY
        .saturating_mul(1u32 << exponent)
        .min(RESTART_MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: RestartPolicyName, max: i64) -> RestartPolicy {
        RestartPolicy {
            name,
            maximum_retry_count: max,
        }
    }

    #[test]
    fn the_delay_doubles_from_100_ms_and_stops_at_a_minute() {
        let delays: Vec<u128> = (0..5).map(|n| restart_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600]);
        assert_eq!(restart_delay(9), Duration::from_millis(51_200));
        assert_eq!(restart_delay(10), RESTART_MAX_DELAY);
        assert_eq!(restart_delay(i64::MAX), RESTART_MAX_DELAY);
        assert_eq!(restart_delay(-1), RESTART_BASE_DELAY);
    }

    #[test]
    fn no_never_restarts_and_always_restarts_whatever_the_exit_code() {
        let no = policy(RestartPolicyName::No, 0);
        assert!(!no.restarts_after_exit(1, 0, false));
        let always = policy(RestartPolicyName::Always, 0);
        assert!(always.restarts_after_exit(0, 50, false));
        assert!(always.restarts_after_exit(137, 0, false));
        assert!(
            !always.restarts_after_exit(1, 0, true),
            "not after docker stop"
        );
        let unless = policy(RestartPolicyName::UnlessStopped, 0);
        assert!(unless.restarts_after_exit(0, 0, false));
        assert!(!unless.restarts_after_exit(0, 0, true));
    }

    #[test]
    fn on_failure_restarts_non_zero_exits_up_to_its_maximum() {
        let limited = policy(RestartPolicyName::OnFailure, 3);
        assert!(!limited.restarts_after_exit(0, 0, false));
        assert!(limited.restarts_after_exit(2, 0, false));
        assert!(limited.restarts_after_exit(2, 2, false));
        assert!(!limited.restarts_after_exit(2, 3, false));
        let unlimited = policy(RestartPolicyName::OnFailure, 0);
        assert!(unlimited.restarts_after_exit(1, 1000, false));
    }

    #[test]
    fn on_a_node_reboot_only_what_the_seeds_say_comes_back() {
        let always = policy(RestartPolicyName::Always, 0);
        assert!(always.starts_on_boot(true, None));
        assert!(!always.starts_on_boot(false, Some(0)));
        let unless = policy(RestartPolicyName::UnlessStopped, 0);
        assert!(unless.starts_on_boot(true, None));
        assert!(!unless.starts_on_boot(false, None));
        let on_failure = policy(RestartPolicyName::OnFailure, 0);
        assert!(on_failure.starts_on_boot(true, Some(137)));
        assert!(!on_failure.starts_on_boot(true, Some(0)));
        assert!(!on_failure.starts_on_boot(true, None));
        assert!(!policy(RestartPolicyName::No, 0).starts_on_boot(true, Some(1)));
    }
}
