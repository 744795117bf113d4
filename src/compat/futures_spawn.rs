//! `futures::task::{Spawn, LocalSpawn}` for `Loop` and `Remote` (feature
//! `futures-task`).

use futures_task::{FutureObj, LocalFutureObj, LocalSpawn, Spawn, SpawnError};

use crate::{Loop, Remote};

/// Spawns a local (`!Send`) future as a detached task on this loop
/// ([`create_task`](Loop::create_task)); from the loop's thread, as `Loop` is `!Send`.
///
/// ```
/// use futures::task::LocalSpawnExt;
/// let lp = evloop::Loop::new().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// let local = std::rc::Rc::new(5); // !Send
/// lp.spawn_local(async move { tx.send(*local * 2).unwrap() }).unwrap();
/// lp.run_until_complete(evloop::yield_now()).unwrap();
/// assert_eq!(rx.try_recv().unwrap(), 10);
/// ```
///
/// # Errors
/// `SpawnError::shutdown()` on a closed loop (where `create_task` would panic).
impl LocalSpawn for Loop {
    #[track_caller]
    fn spawn_local_obj(&self, future: LocalFutureObj<'static, ()>) -> Result<(), SpawnError> {
        self.status_local()?;
        drop(self.create_task(future));
        Ok(())
    }

    fn status_local(&self) -> Result<(), SpawnError> {
        if self.is_closed() {
            Err(SpawnError::shutdown())
        } else {
            Ok(())
        }
    }
}

/// Spawns a `Send` future as a detached task on this loop, as
/// [`LocalSpawn`](#impl-LocalSpawn-for-Loop) does.
impl Spawn for Loop {
    #[track_caller]
    fn spawn_obj(&self, future: FutureObj<'static, ()>) -> Result<(), SpawnError> {
        self.spawn_local_obj(future.into())
    }

    fn status(&self) -> Result<(), SpawnError> {
        self.status_local()
    }
}

/// Spawns a `Send` future on the remote's loop from any thread
/// ([`Remote::spawn`], detached).
///
/// # Errors
/// `SpawnError::shutdown()` once the loop is closed.
impl Spawn for Remote {
    #[track_caller]
    fn spawn_obj(&self, future: FutureObj<'static, ()>) -> Result<(), SpawnError> {
        self.spawn(future)
            .map(drop)
            .map_err(|_| SpawnError::shutdown())
    }

    fn status(&self) -> Result<(), SpawnError> {
        if self.is_closed() {
            Err(SpawnError::shutdown())
        } else {
            Ok(())
        }
    }
}
