//! What a live transfer's driver listens to: the user's commands in order, and a cancel that
//! nothing can hold up.
//!
//! The cancel is a flag of its own, not one more queued command: a driver waits on its peer in
//! many places (room to write a message, a stream to open), and a cancel read only between
//! those waits was not honoured while the peer stopped reading — the transfer ran on until a
//! write limit ended it as failed, 9 s after the user's cancel. Every such wait is raced
//! against [`Cancel::or`], and [`Commands::next`] yields the cancel before anything queued
//! (a queue full of pauses refused it, too).

use std::future::Future;

use tokio::sync::{mpsc, watch};

use super::wire::Control;

/// Commands to a live transfer's driver.
#[derive(Debug)]
pub(super) enum Cmd {
    Pause,
    Resume,
    /// Never queued: [`super::Spacedrop::cancel`] sets the transfer's own flag, which
    /// `Commands::next` yields as this before anything queued.
    Cancel,
    /// The node is stopping: end as interrupted (resumable), keeping partial files.
    Interrupt,
}

/// The message the other side gets for our pause/resume command.
pub(super) fn control_for(cmd: &Cmd) -> Option<Control> {
    match cmd {
        Cmd::Pause => Some(Control::Pause),
        Cmd::Resume => Some(Control::Resume),
        Cmd::Cancel | Cmd::Interrupt => None,
    }
}

/// The cancel flag of one live transfer, as its driver sees it.
#[derive(Clone)]
pub(super) struct Cancel(watch::Receiver<bool>);

impl Cancel {
    pub(super) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Until the transfer is cancelled; never if its flag is gone (the transfer has ended).
    pub(super) async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `f`'s output, or `None` if the transfer is cancelled first (or already was); `f` is then
    /// dropped where it stood.
    pub(super) async fn or<F: Future>(&self, f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.wait() => None,
            r = f => Some(r),
        }
    }
}

/// A live transfer's commands.
pub(super) struct Commands {
    rx: mpsc::Receiver<Cmd>,
    pub(super) cancel: Cancel,
}

/// The sending halves, kept with the live transfer.
pub(super) struct Handles {
    pub(super) cmds: mpsc::Sender<Cmd>,
    pub(super) cancel: watch::Sender<bool>,
}

/// A new pair of command channels, queue of `depth`.
pub(super) fn channel(depth: usize) -> (Handles, Commands) {
    let (tx, rx) = mpsc::channel(depth);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    (
        Handles {
            cmds: tx,
            cancel: cancel_tx,
        },
        Commands {
            rx,
            cancel: Cancel(cancel_rx),
        },
    )
}

impl Commands {
    /// The next command, a cancel before anything queued. `None` (the handles are gone: the
    /// live entry was replaced or ended) means stop, as a cancel.
    pub(super) async fn next(&mut self) -> Option<Cmd> {
        tokio::select! {
            biased;
            _ = self.cancel.wait() => Some(Cmd::Cancel),
            c = self.rx.recv() => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_cancel_comes_before_queued_commands() {
        let (h, mut c) = channel(2);
        h.cmds.try_send(Cmd::Pause).unwrap();
        h.cmds.try_send(Cmd::Resume).unwrap();
        // The queue is full; the cancel still gets through.
        assert!(h.cmds.try_send(Cmd::Pause).is_err());
        h.cancel.send_replace(true);
        assert!(matches!(c.next().await, Some(Cmd::Cancel)));
        assert!(c.cancel.is_set());
    }

    #[tokio::test]
    async fn queued_commands_come_in_order() {
        let (h, mut c) = channel(4);
        h.cmds.try_send(Cmd::Pause).unwrap();
        h.cmds.try_send(Cmd::Resume).unwrap();
        assert!(matches!(c.next().await, Some(Cmd::Pause)));
        assert!(matches!(c.next().await, Some(Cmd::Resume)));
        drop(h);
        assert!(c.next().await.is_none());
    }

    #[tokio::test]
    async fn a_cancel_abandons_a_wait_that_never_ends() {
        let (h, c) = channel(1);
        let cancel = c.cancel.clone();
        let waiting = tokio::spawn(async move { cancel.or(std::future::pending::<()>()).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        h.cancel.send_replace(true);
        assert_eq!(waiting.await.unwrap(), None);
        // Cancelled already: nothing more is started.
        assert_eq!(c.cancel.or(async { 1 }).await, None);
    }

    #[tokio::test]
    async fn without_a_cancel_the_work_is_done() {
        let (_h, c) = channel(1);
        assert_eq!(c.cancel.or(async { 7 }).await, Some(7));
        // The handles gone (the transfer ended) is no cancel.
        let (h, c) = channel(1);
        drop(h);
        assert_eq!(c.cancel.or(async { 8 }).await, Some(8));
    }
}
