//! [`TaskGroupError`]: what [`TaskGroup::wait`](crate::TaskGroup::wait) reports when
//! children panicked (asyncio's `ExceptionGroup` out of a `TaskGroup`).

use std::error::Error;
use std::fmt;
use std::panic::Location;

use crate::task::TaskError;

/// Every child of a [`TaskGroup`](crate::TaskGroup) that panicked, in the order the
/// panics happened (asyncio's `ExceptionGroup`).
///
/// Each error is a [`TaskError::Panicked`] holding the child's panic payload; the
/// child's [`Task`](crate::Task) sees a `Panicked` carrying its message only.
/// [`locations`](TaskGroupError::locations) names, for each, where the child was
/// spawned.
pub struct TaskGroupError {
    errors: Vec<TaskError>,
    locations: Vec<&'static Location<'static>>,
}

impl TaskGroupError {
    pub(crate) fn new(
        errors: Vec<TaskError>,
        locations: Vec<&'static Location<'static>>,
    ) -> TaskGroupError {
        debug_assert_eq!(errors.len(), locations.len());
        TaskGroupError { errors, locations }
    }

    /// The children's panics, in the order they happened (never empty).
    pub fn errors(&self) -> &[TaskError] {
        &self.errors
    }

    /// Where each child in [`errors`](TaskGroupError::errors) was spawned (the
    /// `TaskGroup::spawn` call), in the same order.
    pub fn locations(&self) -> &[&'static Location<'static>] {
        &self.locations
    }

    /// The children's panics, to `resume_unwind` one of them for instance.
    pub fn into_errors(self) -> Vec<TaskError> {
        self.errors
    }
}

impl fmt::Debug for TaskGroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroupError")
            .field("errors", &self.errors)
            .field("locations", &self.locations)
            .finish()
    }
}

impl fmt::Display for TaskGroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} TaskGroup child{} panicked",
            if n == 1 { "" } else { "ren" }
        )?;
        for (e, at) in self.errors.iter().zip(&self.locations) {
            let message = e.panic_message().unwrap_or("(a non-string panic payload)");
            write!(f, "; child spawned at {at}: {message}")?;
        }
        Ok(())
    }
}

impl Error for TaskGroupError {}
