//! Synchronisation primitives for tasks on one loop: `Queue`, `Event`, `Lock`,
//! `Semaphore`.
