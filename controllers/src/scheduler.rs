//! The work queue: keys waiting to be reconciled, each with the instant it
//! is due.
//!
//! It knows nothing of reconciles, leadership or tokio tasks — it is a plain
//! data structure driven by the [`runner`](crate::runner), which is why the
//! rules of the queue can be tested on their own. Its limits: it does not
//! sleep (the runner sleeps until [`Scheduler::next_deadline`]) and it does
//! not know which keys are running (the runner keeps those out of it).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use tokio::time::Instant;

/// Keys with deadlines; [`Scheduler::pop_due`] hands out the earliest.
#[derive(Debug)]
pub struct Scheduler<T> {
    /// One entry per key: its deadline and the sequence number it was
    /// scheduled with. Scheduling a key that is already here keeps the
    /// earlier deadline (earliest deadline wins), so a burst of triggers for
    /// one key leaves one entry.
    entries: HashMap<T, (Instant, u64)>,
    /// The same entries ordered by deadline, then by the order they were
    /// scheduled in (so keys due at one instant run first-come first-served).
    /// Invariant: `(deadline, seq, key)` is here iff `entries[key] ==
    /// (deadline, seq)`; the two always have the same length.
    queue: BTreeSet<(Instant, u64, T)>,
    /// Next sequence number; only grows.
    seq: u64,
}

impl<T: Clone + Eq + Hash + Ord> Default for Scheduler<T> {
    fn default() -> Self {
        Scheduler {
            entries: HashMap::new(),
            queue: BTreeSet::new(),
            seq: 0,
        }
    }
}

impl<T: Clone + Eq + Hash + Ord> Scheduler<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `key` to run at `at`, or earlier if it is already queued
    /// earlier. Returns whether the queue changed.
    pub fn schedule(&mut self, key: T, at: Instant) -> bool {
        if let Some(&(current, seq)) = self.entries.get(&key) {
            if current <= at {
                return false;
            }
            self.queue.remove(&(current, seq, key.clone()));
        }
        let seq = self.seq;
        self.seq += 1;
        self.entries.insert(key.clone(), (at, seq));
        self.queue.insert((at, seq, key));
        true
    }

    /// Take the earliest key that is due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let first = self.queue.first()?;
        if first.0 > now {
            return None;
        }
        let (_, _, key) = self.queue.pop_first()?;
        self.entries.remove(&key);
        Some(key)
    }

    /// Drop `key` from the queue; returns its deadline when it was queued.
    pub fn remove(&mut self, key: &T) -> Option<Instant> {
        let (at, seq) = self.entries.remove(key)?;
        self.queue.remove(&(at, seq, key.clone()));
        Some(at)
    }

    /// The deadline of `key`, when queued.
    pub fn deadline(&self, key: &T) -> Option<Instant> {
        self.entries.get(key).map(|(at, _)| *at)
    }

    /// The earliest deadline in the queue.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _, _)| *at)
    }

    /// How many keys are queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drop every key.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_key_scheduled_many_times_is_queued_once_at_its_earliest_deadline() {
        let now = Instant::now();
        let mut s = Scheduler::new();
        assert!(s.schedule("a", now + Duration::from_secs(5)));
        assert!(s.schedule("a", now + Duration::from_secs(1)));
        assert!(!s.schedule("a", now + Duration::from_secs(3)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.deadline(&"a"), Some(now + Duration::from_secs(1)));
        assert_eq!(s.pop_due(now), None, "not due yet");
        assert_eq!(s.pop_due(now + Duration::from_secs(1)), Some("a"));
        assert!(s.is_empty());
    }

    #[test]
    fn keys_come_out_by_deadline_then_first_come_first_served() {
        let now = Instant::now();
        let mut s = Scheduler::new();
        s.schedule("late", now + Duration::from_secs(2));
        s.schedule("b", now);
        s.schedule("a", now);
        assert_eq!(s.next_deadline(), Some(now));
        let later = now + Duration::from_secs(10);
        let order: Vec<_> = std::iter::from_fn(|| s.pop_due(later)).collect();
        assert_eq!(order, ["b", "a", "late"]);
    }

    #[test]
    fn a_removed_key_is_gone_from_both_views() {
        let now = Instant::now();
        let mut s = Scheduler::new();
        s.schedule("a", now);
        assert_eq!(s.remove(&"a"), Some(now));
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.pop_due(now), None);
    }
}
