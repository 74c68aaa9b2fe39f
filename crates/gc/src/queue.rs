//! A work queue like client-go's rate-limited workqueue: an item queued twice is processed once, an item is never
//! processed by two workers at a time (added while in flight, it runs again after), and failures come back after
//! a per-item exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(60);

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                shut_down: false,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue inconsistent beyond a lost item.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn add(&self, item: T) {
        let mut s = self.lock();
        if s.shut_down || s.dirty.contains(&item) {
            return;
        }
        s.dirty.insert(item.clone());
        if !s.processing.contains(&item) {
            s.queue.push_back(item);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `item` again after its backoff: 5 ms doubling per consecutive failure, at most a minute.
    pub fn retry(self: &Arc<Self>, item: T) {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(item.clone()).or_insert(0);
            *n = n.saturating_add(1);
            backoff(*n)
        };
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// The item succeeded: its next failure starts the backoff afresh.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// The next item; `None` once the queue is shut down.
    pub async fn next(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(item);
                }
            }
            notified.await;
        }
    }

    /// A worker finished `item`; if it was added meanwhile it goes back in the queue.
    pub fn done(&self, item: &T) {
        let mut s = self.lock();
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_collapse_and_in_flight_items_wait() {
        let q = WorkQueue::new();
        q.add(1);
        q.add(1);
        q.add(2);
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some(1));
        // Added while in flight: not handed to a second worker until done.
        q.add(1);
        assert_eq!(q.next().await, Some(2));
        assert!(q.is_empty());
        q.done(&1);
        assert_eq!(q.next().await, Some(1));
    }

    #[tokio::test]
    async fn retries_come_back_after_a_growing_delay() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(3), Duration::from_millis(20));
        assert_eq!(backoff(100), MAX_DELAY);
        let q = WorkQueue::new();
        q.retry("a");
        assert!(q.is_empty());
        let got = tokio::time::timeout(Duration::from_secs(1), q.next()).await;
        assert_eq!(got.ok().flatten(), Some("a"));
    }

    #[tokio::test]
    async fn shutting_down_wakes_waiting_workers() {
        let q: Arc<WorkQueue<u8>> = WorkQueue::new();
        let waiter = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.next().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.shut_down();
        let got = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        assert!(matches!(got, Ok(Ok(None))));
    }
}
