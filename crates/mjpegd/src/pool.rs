//! A small pool of encoder threads, and an ordered, bounded pipeline over it.
//!
//! JPEG work (rotate/flip/resize, raw-to-JPEG conversion, rendering) is CPU-bound and takes
//! longer than a frame period at 720p and above on small machines, so one camera encoding one
//! frame at a time cannot keep up. [`Pool`] runs jobs on a fixed number of threads (default: one
//! per core, as µStreamer's JPEG workers); [`Ordered`] submits one stream's jobs to it and hands
//! the results back strictly in submission order, holding at most a fixed number of frames in
//! flight. When a stream submits faster than the pool finishes, the oldest frame not yet started
//! is dropped (latest-frame rule: a slow pool skips frames, it never builds a queue).
//!
//! A leaf module (std and tokio only): the hub, sources and HTTP handlers can all use it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

/// Most worker threads a pool accepts: far more than any machine mjpegd runs on has cores.
pub const MAX_WORKERS: usize = 256;

/// A job's state, shared by the pipeline (which may cancel it) and the worker (which starts it).
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Queue {
    jobs: Mutex<Jobs>,
    ready: Condvar,
}

struct Jobs {
    queue: VecDeque<Job>,
    /// The pool was dropped: workers finish what is queued and exit.
    closed: bool,
}

/// A fixed set of worker threads running submitted jobs, first in first out.
///
/// The queue itself is not bounded here: every submitter bounds its own jobs ([`Ordered`] keeps
/// at most its `max_in_flight`), so the queue holds at most the sum of those.
pub struct Pool {
    queue: Arc<Queue>,
    workers: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .finish()
    }
}

/// The pool could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start an encoder thread: {0}")]
pub struct PoolError(#[source] std::io::Error);

impl Pool {
    /// Starts `workers` threads (0: one per core; at most [`MAX_WORKERS`]).
    ///
    /// Fails only when the system refuses to start any thread.
    pub fn new(workers: usize) -> Result<Pool, PoolError> {
        let wanted = match workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(MAX_WORKERS);
        let queue = Arc::new(Queue {
            jobs: Mutex::new(Jobs {
                queue: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let mut started = 0;
        let mut last_error = None;
        for i in 0..wanted {
            let q = Arc::clone(&queue);
            match std::thread::Builder::new()
                .name(format!("mjpegd-encode-{i}"))
                .spawn(move || work(&q))
            {
                Ok(_) => started += 1,
                Err(e) => last_error = Some(e),
            }
        }
        match (started, last_error) {
            (0, Some(e)) => Err(PoolError(e)),
            (n, Some(e)) => {
                tracing::warn!(started = n, wanted, error = %e, "started fewer encoder threads than asked");
                Ok(Pool { queue, workers: n })
            }
            (n, None) => Ok(Pool { queue, workers: n }),
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    fn push(&self, job: Job) {
        // A poisoned queue means a worker panicked while holding the lock, which it never does
        // (jobs run outside it); keep going with the data as it is.
        let mut jobs = self.queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.queue.push_back(job);
        drop(jobs);
        self.queue.ready.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut jobs = self.queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.closed = true;
        drop(jobs);
        self.queue.ready.notify_all();
    }
}

fn work(queue: &Queue) {
    loop {
        let job = {
            let mut jobs = queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = jobs.queue.pop_front() {
                    break job;
                }
                if jobs.closed {
                    return;
                }
                jobs = queue.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
        };
        job();
    }
}

/// Why [`Ordered::next`] has no result for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The job panicked (a bug); its frame is lost, later ones are not.
    Panicked,
}

struct Pending<T> {
    state: Arc<AtomicU8>,
    result: oneshot::Receiver<std::thread::Result<T>>,
}

/// One stream's jobs on a [`Pool`]: results in submission order, at most `max_in_flight` jobs
/// submitted and not yet collected.
pub struct Ordered<T> {
    pool: Arc<Pool>,
    pending: VecDeque<Pending<T>>,
    max_in_flight: usize,
    dropped: u64,
}

impl<T: Send + 'static> Ordered<T> {
    /// A pipeline holding at most `max_in_flight` frames (at least 1).
    pub fn new(pool: Arc<Pool>, max_in_flight: usize) -> Ordered<T> {
        Ordered {
            pool,
            pending: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            dropped: 0,
        }
    }

    /// Runs `job` on the pool. If `max_in_flight` jobs are already pending, first drops the
    /// oldest one not yet started (or, when all are running, the oldest one, whose result is
    /// then discarded); returns how many were dropped (0 or 1).
    pub fn submit(&mut self, job: impl FnOnce() -> T + Send + 'static) -> u64 {
        let mut dropped = 0;
        if self.pending.len() >= self.max_in_flight {
            let victim = self
                .pending
                .iter()
                .position(|p| {
                    p.state
                        .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                })
                .unwrap_or(0);
            self.pending.remove(victim);
            dropped = 1;
            self.dropped += 1;
        }
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (tx, rx) = oneshot::channel();
        let job_state = Arc::clone(&state);
        self.pool.push(Box::new(move || {
            if job_state
                .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return; // Cancelled before it started: the frame was dropped.
            }
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            // The pipeline may have gone (camera stopped): nobody wants the result then.
            let _ = tx.send(out);
        }));
        self.pending.push_back(Pending { state, result: rx });
        dropped
    }

    /// Jobs submitted and not yet collected.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no job is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Jobs dropped by [`submit`](Self::submit) so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The result of the oldest pending job, once it is done; `None` when nothing is pending
    /// (so `select!` on it with a source's next frame never spins).
    ///
    /// Cancel-safe: a result not yet taken stays at the front.
    pub async fn next(&mut self) -> Option<Result<T, JobError>> {
        let front = self.pending.front_mut()?;
        let out = (&mut front.result).await;
        self.pending.pop_front();
        Some(match out {
            Ok(Ok(v)) => Ok(v),
            // The job panicked, or its sender went without a result (it can only go unsent
            // by panicking, since a pending job is never cancelled).
            Ok(Err(_)) | Err(_) => Err(JobError::Panicked),
        })
    }

    /// Waits for every pending job, in order, and returns the results.
    pub async fn drain(&mut self) -> Vec<Result<T, JobError>> {
        let mut out = Vec::with_capacity(self.pending.len());
        while let Some(r) = self.next().await {
            out.push(r);
        }
        out
    }
}

impl<T> Drop for Ordered<T> {
    fn drop(&mut self) {
        // A stopped camera's frames are nobody's: those not started yet are skipped.
        for p in &self.pending {
            let _ =
                p.state
                    .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn pool(n: usize) -> Arc<Pool> {
        Arc::new(Pool::new(n).expect("pool"))
    }

    #[tokio::test]
    async fn results_come_in_submission_order() {
        let pool = pool(4);
        assert_eq!(pool.workers(), 4);
        let mut ordered = Ordered::new(Arc::clone(&pool), 4);
        // Later jobs finish first: the order must still be the submission order.
        for i in 0..4u64 {
            ordered.submit(move || {
                std::thread::sleep(Duration::from_millis(40 - 10 * i));
                i
            });
        }
        let got: Vec<u64> = ordered
            .drain()
            .await
            .into_iter()
            .map(|r| r.expect("job result"))
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3]);
        assert_eq!(ordered.dropped(), 0);
    }

    #[tokio::test]
    async fn jobs_run_concurrently() {
        let pool = pool(2);
        let mut ordered = Ordered::new(Arc::clone(&pool), 2);
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        // The first job can only finish once the second one has run: on one thread it would hang.
        let wait = Arc::clone(&rx);
        ordered.submit(move || {
            let got = wait
                .lock()
                .expect("receiver")
                .recv_timeout(Duration::from_secs(10));
            got.is_ok()
        });
        ordered.submit(move || tx.send(()).is_ok());
        let got: Vec<bool> = ordered
            .drain()
            .await
            .into_iter()
            .map(|r| r.expect("job result"))
            .collect();
        assert_eq!(got, vec![true, true]);
    }

    #[tokio::test]
    async fn a_full_pipeline_drops_the_oldest_queued_frame() {
        let pool = pool(1);
        let mut ordered = Ordered::new(Arc::clone(&pool), 2);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        // Job 0 holds the only worker until released.
        ordered.submit(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv_timeout(Duration::from_secs(10));
            0u32
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("job 0 started");
        assert_eq!(ordered.submit(|| 1), 0);
        // Full (job 0 running, job 1 queued): job 2 replaces job 1, not the running job 0.
        assert_eq!(ordered.submit(|| 2), 1);
        assert_eq!(ordered.submit(|| 3), 1);
        assert_eq!(ordered.len(), 2);
        release_tx.send(()).expect("release job 0");
        let got: Vec<u32> = ordered
            .drain()
            .await
            .into_iter()
            .map(|r| r.expect("job result"))
            .collect();
        assert_eq!(got, vec![0, 3]);
        assert_eq!(ordered.dropped(), 2);
    }

    #[tokio::test]
    async fn when_every_frame_is_running_the_oldest_result_is_discarded() {
        let pool = pool(2);
        let mut ordered = Ordered::new(Arc::clone(&pool), 2);
        let (started_tx, started_rx) = mpsc::channel::<()>();
        for i in 0..2u32 {
            let started = started_tx.clone();
            ordered.submit(move || {
                let _ = started.send(());
                std::thread::sleep(Duration::from_millis(50));
                i
            });
        }
        for _ in 0..2 {
            started_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("both started");
        }
        assert_eq!(ordered.submit(|| 2), 1);
        let got: Vec<u32> = ordered
            .drain()
            .await
            .into_iter()
            .map(|r| r.expect("job result"))
            .collect();
        assert_eq!(got, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_panicking_job_loses_only_its_own_result() {
        let pool = pool(1);
        let mut ordered = Ordered::new(Arc::clone(&pool), 3);
        ordered.submit(|| 1u8);
        ordered.submit(|| -> u8 { panic!("a bug in a job") });
        ordered.submit(|| 3u8);
        let got = ordered.drain().await;
        assert_eq!(got, vec![Ok(1), Err(JobError::Panicked), Ok(3)]);
        // The worker survived the panic.
        ordered.submit(|| 4u8);
        assert_eq!(ordered.next().await, Some(Ok(4)));
        assert_eq!(ordered.next().await, None);
    }

    #[tokio::test]
    async fn dropping_a_pipeline_skips_its_jobs_not_yet_started() {
        let pool = pool(1);
        let mut ordered = Ordered::new(Arc::clone(&pool), 4);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        ordered.submit(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv_timeout(Duration::from_secs(10));
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("job 0 started");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran2 = Arc::clone(&ran);
        ordered.submit(move || ran2.store(true, Ordering::SeqCst));
        drop(ordered);
        release_tx.send(()).expect("release job 0");
        // One worker, first in first out: once a later job is done, the skipped one was seen.
        let mut after = Ordered::new(Arc::clone(&pool), 1);
        after.submit(|| ());
        assert_eq!(after.next().await, Some(Ok(())));
        assert!(
            !ran.load(Ordering::SeqCst),
            "a dropped pipeline's job still ran"
        );
    }

    #[test]
    fn pool_size_is_bounded() {
        let start = Instant::now();
        let pool = Pool::new(MAX_WORKERS + 10).expect("pool");
        assert_eq!(pool.workers(), MAX_WORKERS);
        assert!(start.elapsed() < Duration::from_secs(10));
        let pool = Pool::new(0).expect("pool");
        assert!(pool.workers() >= 1);
    }
}
