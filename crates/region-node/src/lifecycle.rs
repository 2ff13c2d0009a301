//! Task lifetimes: every background task is told when to stop, and the node
//! waits for it before exiting.
//!
//! The shape is tokio's mini-redis: [`Lifecycle`] (owned by whoever started
//! the tasks) holds the sending side of a signal; each task gets a
//! [`Shutdown`] as a parameter and watches it at its await points. A
//! `Shutdown` is also a token of "still running": [`Lifecycle::stop`]
//! signals, then waits until every clone of it is gone (tasks ended, socket
//! sessions closed, requests answered), up to a deadline. Nothing has to be
//! registered by hand, so a task spawned late (a WebSocket session) is
//! awaited as surely as one spawned at start-up.
//!
//! A task decides what "stop" means for it: the writer finishes the batch in
//! flight before it goes, a loop finishes its current round, a socket sends
//! its close frame.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a stopping node waits for its tasks (in-flight requests, the
/// batch being committed, close frames) before it gives up on them.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Names of the spawned tasks that are still running, for the log line when
/// a stop runs out of time.
type Running = Arc<Mutex<BTreeMap<u64, &'static str>>>;

/// The stopping side: signals every [`Shutdown`] made from it and awaits
/// them.
pub struct Lifecycle {
    signal: Trigger,
    listener: Shutdown,
    /// Closed once every `Shutdown` (and so every task holding one) is gone.
    done: mpsc::Receiver<()>,
}

/// A task's view of its [`Lifecycle`]: whether to stop, and, by being
/// alive, that the task has not finished yet. Cheap to clone; pass it to
/// the task as a parameter.
#[derive(Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    /// Never sent on: only its being dropped is awaited.
    _alive: mpsc::Sender<()>,
    running: Running,
    next_id: Arc<AtomicU64>,
    /// This listener's name in `running`, shared by its clones.
    _entry: Option<Arc<Registered>>,
}

/// The tasks that did not end before the deadline.
#[derive(Debug, thiserror::Error)]
#[error("tasks still running after the shutdown grace period: {0:?}")]
pub struct Unfinished(pub Vec<&'static str>);

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        let (signal, rx) = watch::channel(false);
        let (alive, done) = mpsc::channel(1);
        Lifecycle {
            signal: Trigger(signal),
            listener: Shutdown {
                signal: rx,
                _alive: alive,
                running: Running::default(),
                next_id: Arc::default(),
                _entry: None,
            },
            done,
        }
    }

    /// An unnamed listener.
    pub fn shutdown(&self) -> Shutdown {
        self.listener.clone()
    }

    /// See [`Shutdown::spawn`].
    pub fn spawn<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.listener.spawn(name, task);
    }

    /// Signals every task; does not wait.
    pub fn trigger(&self) {
        self.signal.0.send_replace(true);
    }

    /// Signals every task and waits until all of them have ended, or until
    /// `deadline`; then names the ones still running.
    pub async fn stop(self, deadline: Instant) -> Result<(), Unfinished> {
        let Lifecycle {
            signal,
            listener,
            mut done,
        } = self;
        signal.0.send_replace(true);
        let running = listener.running.clone();
        drop(listener);
        match tokio::time::timeout_at(deadline, done.recv()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let names = running
                    .lock()
                    .map(|r| r.values().copied().collect())
                    .unwrap_or_default();
                Err(Unfinished(names))
            }
        }
    }
}

/// Gives the signal when dropped, so a lifecycle dropped without
/// [`Lifecycle::stop`] (an error during start-up) still stops what it
/// started.
struct Trigger(watch::Sender<bool>);

impl Drop for Trigger {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A listener that is never signalled, for a task whose owner stops it
    /// by other means (tests, benchmarks: dropping every handle).
    pub fn never() -> Shutdown {
        let (_, signal) = watch::channel(false);
        let (alive, _) = mpsc::channel(1);
        Shutdown {
            signal,
            _alive: alive,
            running: Running::default(),
            next_id: Arc::default(),
            _entry: None,
        }
    }

    /// Whether the stop signal has been given.
    pub fn is_triggered(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once the stop signal is given (at once if it already was).
    /// Cancel-safe, so it can sit in every `select!` of a loop.
    pub async fn triggered(&mut self) {
        if self.signal.wait_for(|stop| *stop).await.is_err() {
            // Only `never()` has no sender: it is never signalled.
            std::future::pending::<()>().await;
        }
    }

    /// A listener named `name` while it or any clone of it lives: what
    /// [`Lifecycle::stop`] reports if it outlives the deadline.
    pub fn enlist(&self, name: &'static str) -> Shutdown {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut running) = self.running.lock() {
            running.insert(id, name);
        }
        Shutdown {
            _entry: Some(Arc::new(Registered {
                id,
                running: self.running.clone(),
            })),
            ..self.clone()
        }
    }

    /// Spawns `task(listener)` as a task of this lifecycle, named `name`.
    pub fn spawn<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task(self.enlist(name)));
    }
}

/// Removes a name from the running list when the last listener carrying it
/// is dropped: when its task ends, however it ends (a panic included).
struct Registered {
    id: u64,
    running: Running,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn in_ms(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn stop_waits_for_every_task_to_finish_its_work() {
        let lifecycle = Lifecycle::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..3u64 {
            let tx = tx.clone();
            lifecycle.spawn("worker", move |mut shutdown| async move {
                shutdown.triggered().await;
                // Work after the signal (a batch in flight) is waited for.
                tokio::time::sleep(Duration::from_millis(10 * i)).await;
                let _ = tx.send(i);
            });
        }
        drop(tx);
        lifecycle.stop(in_ms(1_000)).await.unwrap();
        let mut ended = vec![];
        while let Ok(i) = rx.try_recv() {
            ended.push(i);
        }
        ended.sort();
        assert_eq!(ended, vec![0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_signal_is_named_after_the_deadline() {
        let lifecycle = Lifecycle::new();
        lifecycle.spawn("stubborn", |shutdown| async move {
            let _still_running = shutdown;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        lifecycle.spawn("polite", |mut shutdown| async move {
            shutdown.triggered().await;
        });
        let err = lifecycle.stop(in_ms(100)).await.unwrap_err();
        assert_eq!(err.0, vec!["stubborn"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listener_held_outside_a_task_counts_until_dropped() {
        let lifecycle = Lifecycle::new();
        let mut held = lifecycle.shutdown();
        let waiter = tokio::spawn(lifecycle.stop(in_ms(1_000)));
        held.triggered().await;
        assert!(held.is_triggered());
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "stop returned while a listener lived"
        );
        drop(held);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn never_is_never_triggered_and_dropping_a_lifecycle_signals() {
        let mut never = Shutdown::never();
        let waited = tokio::time::timeout(Duration::from_secs(60), never.triggered()).await;
        assert!(waited.is_err());
        assert!(!never.is_triggered());

        let lifecycle = Lifecycle::new();
        let mut listener = lifecycle.shutdown();
        drop(lifecycle);
        tokio::time::timeout(Duration::from_millis(1), listener.triggered())
            .await
            .expect("signalled by drop");
    }
}
