//! [`ActorSlot`]: where a handle finds its actor. A supervisor that
//! restarts an actor puts the new one in the slot, so handles held by other
//! actors and by callers keep working across restarts.

use std::sync::{Arc, RwLock};

use ractor::ActorRef;

/// The current actor of one role. Cheap to clone.
pub struct ActorSlot<M: ractor::Message> {
    // A std RwLock: read for a clone of the ref, never held across an await.
    inner: Arc<RwLock<ActorRef<M>>>,
}

impl<M: ractor::Message> std::fmt::Debug for ActorSlot<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ActorSlot")
            .field(&self.get().get_id())
            .finish()
    }
}

impl<M: ractor::Message> Clone for ActorSlot<M> {
    fn clone(&self) -> Self {
        ActorSlot {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: ractor::Message> ActorSlot<M> {
    /// A slot holding `actor`.
    pub fn new(actor: ActorRef<M>) -> ActorSlot<M> {
        ActorSlot {
            inner: Arc::new(RwLock::new(actor)),
        }
    }

    /// The actor now.
    pub fn get(&self) -> ActorRef<M> {
        match self.inner.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the actor (after a restart).
    pub fn set(&self, actor: ActorRef<M>) {
        match self.inner.write() {
            Ok(mut a) => *a = actor,
            Err(poisoned) => *poisoned.into_inner() = actor,
        }
    }
}
