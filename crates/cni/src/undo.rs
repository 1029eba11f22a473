//! The undo journal of an ADD: each step that changed something pushes the step that takes it
//! back; on a failure they run in reverse, every one of them even when one fails, and their
//! failures are logged and reported in the error's details. One shape for every plugin, so a
//! failed ADD reads the same whichever plugin it was.

use crate::error::Error;

/// Steps to take back, in the order they were registered.
#[derive(Debug)]
pub struct Journal<T> {
    steps: Vec<T>,
}

impl<T> Default for Journal<T> {
    fn default() -> Self {
        Journal { steps: Vec::new() }
    }
}

impl<T> Journal<T> {
    /// An empty journal.
    pub fn new() -> Journal<T> {
        Journal::default()
    }

    /// Registers the undo of a change (before or right after making it: an undo of something
    /// that was not made must find nothing to do).
    pub fn push(&mut self, step: T) {
        self.steps.push(step);
    }

    /// How many steps are registered.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step, last first, with `undo`; returns `e` with the undo failures in its
    /// details (and logged), so the caller reports the failure that caused the rollback.
    pub fn roll_back(&mut self, e: Error, mut undo: impl FnMut(T) -> Result<(), Error>) -> Error {
        let mut failed = Vec::new();
        while let Some(step) = self.steps.pop() {
            if let Err(u) = undo(step) {
                crate::log_error!("undoing a failed ADD: {}", u.msg);
                failed.push(u.msg);
            }
        }
        if failed.is_empty() {
            return e;
        }
        let mut details = format!("undo after the failure also failed: {}", failed.join("; "));
        if !e.details.is_empty() {
            details = format!("{}; {details}", e.details);
        }
        e.with_details(details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_last_first_all_of_them_and_failures_go_into_the_details() {
        let mut j = Journal::new();
        for step in ["veth", "rules", "ipam", "gateway"] {
            j.push(step);
        }
        let mut ran = Vec::new();
        let e = j.roll_back(Error::internal("nft failed"), |step| {
            ran.push(step);
            if step == "ipam" {
                Err(Error::invalid_config("ipam DEL failed the same way"))
            } else {
                Ok(())
            }
        });
        assert_eq!(ran, ["gateway", "ipam", "rules", "veth"]);
        assert_eq!(e.msg, "nft failed");
        assert_eq!(e.code, crate::code::INTERNAL);
        assert!(
            e.details.contains("ipam DEL failed the same way"),
            "{}",
            e.details
        );
        assert!(j.is_empty());
    }

    #[test]
    fn a_clean_rollback_returns_the_error_unchanged() {
        let mut j = Journal::new();
        j.push(1);
        let e = j.roll_back(Error::internal("x").with_details("why"), |_| Ok(()));
        assert_eq!((e.msg.as_str(), e.details.as_str()), ("x", "why"));
    }
}
