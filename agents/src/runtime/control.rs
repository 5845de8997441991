//! Pause, resume and cancel: a watch channel per task that the Director
//! writes and every Worker of the task reads at each step boundary.
//!
//! A watch whose [`TaskControl`] is gone (the run that owned it ended or
//! was aborted) says [`Control::Pause`]: an orphaned worker stops at its
//! next step boundary and the journal lets the next run pick up from there.

use tokio::sync::watch;

/// What a task's workers should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// Keep going.
    Run,
    /// Stop at the next step boundary and wait to be resumed.
    Pause,
    /// Stop at the next step boundary for good.
    Cancel,
}

/// The Director's end.
#[derive(Debug)]
pub struct TaskControl {
    tx: watch::Sender<Control>,
}

/// A worker's end. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlWatch {
    rx: watch::Receiver<Control>,
}

impl Default for TaskControl {
    fn default() -> TaskControl {
        TaskControl::new()
    }
}

impl TaskControl {
    /// A control that says [`Control::Run`].
    pub fn new() -> TaskControl {
        let (tx, _) = watch::channel(Control::Run);
        TaskControl { tx }
    }

    /// Tells every watcher.
    pub fn set(&self, control: Control) {
        self.tx.send_replace(control);
    }

    /// What it says now.
    pub fn get(&self) -> Control {
        *self.tx.borrow()
    }

    /// A watcher.
    pub fn watch(&self) -> ControlWatch {
        ControlWatch {
            rx: self.tx.subscribe(),
        }
    }
}

impl ControlWatch {
    /// What it says now.
    pub fn get(&self) -> Control {
        let now = *self.rx.borrow();
        if now == Control::Run && self.rx.has_changed().is_err() {
            return Control::Pause;
        }
        now
    }

    /// Waits until it says [`Control::Cancel`]; forever if it never does
    /// (an orphaned watch is never cancelled, only paused).
    pub async fn cancelled(&mut self) {
        loop {
            if *self.rx.borrow_and_update() == Control::Cancel {
                return;
            }
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until it says something other than [`Control::Run`].
    pub async fn stopped(&mut self) -> Control {
        loop {
            let now = *self.rx.borrow_and_update();
            if now != Control::Run {
                return now;
            }
            if self.rx.changed().await.is_err() {
                return Control::Pause;
            }
        }
    }
}
