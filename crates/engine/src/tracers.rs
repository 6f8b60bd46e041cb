//! Tracer threads. A ptrace request for a task must come from the thread that attached it, so to
//! work on several processes at once, each process is attached by one of a few threads and every
//! later request for it runs on that thread. A [`Tracers`] pool owns those threads; work for process
//! `idx` is sent to thread `idx % n` as a closure, which gets that thread's own table of what it has
//! attached, and the caller collects the result from a [`Pending`]. Workers report progress through
//! a channel that [`Pending::wait`] drains into the caller's progress callback.

use crate::Progress;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::Scope;
use std::time::Duration;

/// What one tracer thread has attached, by index of the process in the caller's list.
pub type Owned<T> = HashMap<usize, T>;

type Job<'env, T> = Box<dyn FnOnce(&mut Owned<T>, &mut dyn FnMut(Progress)) + Send + 'env>;

/// A pool of tracer threads, each owning the `T`s (attached tasks) made on it.
pub struct Tracers<'env, T> {
    workers: Vec<Sender<Job<'env, T>>>,
    progress: Receiver<Progress>,
    /// Bumped by [`Tracers::cancel`]: work sent before is skipped.
    epoch: Arc<AtomicU64>,
}

/// The result of work sent to a tracer thread.
pub struct Pending<R>(Receiver<std::thread::Result<R>>);

impl<'env, T: 'env> Tracers<'env, T> {
    /// Start `n` (at least one) tracer threads in `scope`; they end once the pool is dropped, dropping
    /// what they own on their own thread.
    pub fn start<'scope>(scope: &'scope Scope<'scope, 'env>, n: usize) -> Tracers<'env, T> {
        let (progress_tx, progress) = channel();
        let workers = (0..n.max(1))
            .map(|_| {
                let (tx, rx) = channel::<Job<'env, T>>();
                let progress_tx: Sender<Progress> = progress_tx.clone();
                scope.spawn(move || {
                    let mut owned = Owned::new();
                    let mut report = |p: Progress| {
                        let _ = progress_tx.send(p);
                    };
                    for job in rx {
                        job(&mut owned, &mut report);
                    }
                });
                tx
            })
            .collect();
        Tracers { workers, progress, epoch: Arc::new(AtomicU64::new(0)) }
    }

    /// Skip the work sent so far that has not started (after an error, before cleaning up). Its
    /// `Pending`s must not be waited for.
    pub fn cancel(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The number of threads for `tasks` processes on this machine: one per CPU, at most 4.
    pub fn threads_for(tasks: usize) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus.min(4).min(tasks).max(1)
    }

    /// Run `f` on the thread of process `idx`, with that thread's table and a progress reporter.
    pub fn run<R: Send + 'env>(
        &self,
        idx: usize,
        f: impl FnOnce(&mut Owned<T>, &mut dyn FnMut(Progress)) -> R + Send + 'env,
    ) -> Pending<R> {
        let (tx, rx) = channel();
        let (epoch, sent_in) = (self.epoch.clone(), self.epoch.load(Ordering::SeqCst));
        let job: Job<'env, T> = Box::new(move |owned, progress| {
            if epoch.load(Ordering::SeqCst) != sent_in {
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(owned, progress)));
            let _ = tx.send(result);
        });
        // A worker only ends when the pool is dropped: the send cannot fail while `self` lives.
        let _ = self.workers[idx % self.workers.len()].send(job);
        Pending(rx)
    }

    /// Wait for `pending`, passing on the workers' progress meanwhile.
    pub fn wait<R>(&self, pending: Pending<R>, progress: &mut dyn FnMut(Progress)) -> R {
        loop {
            while let Ok(p) = self.progress.try_recv() {
                progress(p);
            }
            match pending.0.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(r)) => return r,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("a tracer thread ended with work pending"),
            }
        }
    }
}

/// `items` dealt round robin into one share per thread ([`Tracers::threads_for`] of their number),
/// for work on them that needs no tracer thread.
pub fn shares<T>(items: Vec<T>) -> Vec<Vec<T>> {
    let threads = Tracers::<()>::threads_for(items.len());
    let mut out: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        out[i % threads].push(item);
    }
    out
}
