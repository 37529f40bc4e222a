//! Running independent jobs (blob copies, layer unpacks) on a few threads, stopping at the
//! first error. Hand-written over `std::thread::scope` because the jobs are few, long and
//! blocking: a work-stealing pool (rayon) would add a dependency for no gain.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Error;

/// The results of [`run_all`]: one slot per item (empty if it did not run or failed), and the
/// first error, if any. Callers clean up the finished results when there was an error.
pub struct Outcome<R> {
    pub results: Vec<Option<R>>,
    pub error: Option<Error>,
}

/// Runs `job` on every item with at most `workers` threads; once a job fails, no new job
/// starts.
pub fn run_all<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    job: impl Fn(&T) -> Result<R, Error> + Sync,
) -> Outcome<R> {
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let failed = || first_error.lock().map(|e| e.is_some()).unwrap_or(true);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    match job(item) {
                        Ok(r) => {
                            if let Ok(mut slot) = slots[i].lock() {
                                *slot = Some(r);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    Outcome {
        results: slots
            .into_iter()
            .map(|s| s.into_inner().ok().flatten())
            .collect(),
        error: first_error.into_inner().ok().flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_stops_at_errors() {
        let items: Vec<u32> = (0..10).collect();
        let ok = run_all(&items, 2, |&i| Ok(i * 2));
        assert!(ok.error.is_none());
        assert_eq!(ok.results, (0..10).map(|i| Some(i * 2)).collect::<Vec<_>>());
        let bad = run_all(&items, 1, |&i| {
            if i == 3 {
                Err(Error::invalid("job", "fails"))
            } else {
                Ok(i)
            }
        });
        assert!(bad.error.is_some());
        assert_eq!(bad.results[2], Some(2));
        assert!(
            bad.results[4..].iter().all(Option::is_none),
            "ran after the error"
        );
    }
}
