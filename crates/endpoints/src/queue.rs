//! A work queue with upstream's `workqueue` guarantees: a key waiting is queued once however often it is added,
//! a key is never handed to two workers at once (an add while it is processed queues it again for afterwards),
//! and failures come back after an exponential delay (5 ms doubling up to 60 s) until a success forgets them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::ObjectKey;

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    queue: VecDeque<ObjectKey>,
    dirty: HashSet<ObjectKey>,
    processing: HashSet<ObjectKey>,
    failures: HashMap<ObjectKey, u32>,
}

/// A cloneable handle on one queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the queue's data is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn add(&self, key: ObjectKey) {
        let mut state = self.lock();
        if !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.queue.push_back(key);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Waits for the next key and marks it processing; call [`WorkQueue::done`] afterwards.
    pub async fn get(&self) -> ObjectKey {
        loop {
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Ends processing of `key`; if it was added meanwhile it goes back in line.
    pub fn done(&self, key: &ObjectKey) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.clone());
            drop(state);
            self.notify.notify_one();
        }
    }

    /// A success: the key's failure count starts over.
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().failures.remove(key);
    }

    /// A failure: the key comes back after its next backoff delay, which is returned.
    pub fn add_rate_limited(&self, key: ObjectKey) -> Duration {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let delay = BASE_DELAY.saturating_mul(2u32.saturating_pow((*failures).min(20))).min(MAX_DELAY);
            *failures += 1;
            delay
        };
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
        delay
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[tokio::test]
    async fn dedups_and_defers_keys_being_processed() {
        let queue = WorkQueue::default();
        queue.add(key("a"));
        queue.add(key("a"));
        queue.add(key("b"));
        assert_eq!(queue.len(), 2);
        let first = queue.get().await;
        assert_eq!(first, key("a"));
        queue.add(key("a"));
        assert_eq!(queue.len(), 1, "a is processing: its new add waits for done");
        queue.done(&first);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.get().await, key("b"));
        assert_eq!(queue.get().await, key("a"));
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_and_reset() {
        let queue = WorkQueue::default();
        assert_eq!(queue.add_rate_limited(key("a")), Duration::from_millis(5));
        assert_eq!(queue.add_rate_limited(key("a")), Duration::from_millis(10));
        assert_eq!(queue.add_rate_limited(key("a")), Duration::from_millis(20));
        queue.forget(&key("a"));
        assert_eq!(queue.add_rate_limited(key("a")), Duration::from_millis(5));
        let got = tokio::time::timeout(Duration::from_secs(1), queue.get()).await.expect("requeued");
        assert_eq!(got, key("a"));
    }
}
