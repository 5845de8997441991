//! [`TaskJournal`]: appends task events to the store and, once they are
//! durable, publishes them on the [`EventBus`].

use troupe_store::{JournalEntry, Store, StoreError, TaskEvent, TaskRecord};

use super::events::{EventBus, TroupeEvent};

/// The store and the bus together. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskJournal {
    store: Store,
    bus: EventBus,
}

impl TaskJournal {
    /// A journal writing to `store` and publishing on `bus`.
    pub fn new(store: Store, bus: EventBus) -> TaskJournal {
        TaskJournal { store, bus }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Appends `event` to `task_id`'s journal and publishes it.
    ///
    /// # Errors
    /// The store's.
    pub async fn record(
        &self,
        task_id: &str,
        event: TaskEvent,
    ) -> Result<JournalEntry, StoreError> {
        let entry = self.store.append(task_id, event).await?;
        self.bus.publish(TroupeEvent::Journal(entry.clone()));
        Ok(entry)
    }

    /// Writes `task` and appends `event` in one transaction, then publishes.
    ///
    /// # Errors
    /// The store's.
    pub async fn record_with_task(
        &self,
        task: TaskRecord,
        event: TaskEvent,
    ) -> Result<JournalEntry, StoreError> {
        let entry = self.store.append_with_task(task, event).await?;
        self.bus.publish(TroupeEvent::Journal(entry.clone()));
        Ok(entry)
    }
}
