//! The root supervisor: a failed child is restarted after its backoff and
//! its slot refilled; past the policy's limit the supervisor escalates.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_agents::runtime::ActorSlot;
use troupe_config::SupervisionConfig;
use troupe_supervision::supervisor::{ChildSpec, SupervisorArgs};
use troupe_supervision::{RootSupervisor, SupervisorHandle};

/// Panics on `true`, answers on `false`.
struct Fragile;

/// What [`Fragile`] is sent: panic or not, and where to answer.
struct Poke(bool, Option<ractor::RpcReplyPort<u32>>);

// ractor's `cluster` feature (on for the workspace) has no blanket impl.
impl ractor::Message for Poke {}

impl Actor for Fragile {
    type Msg = Poke;
    type State = u32;
    type Arguments = u32;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        generation: u32,
    ) -> Result<u32, ActorProcessingErr> {
        Ok(generation)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        Poke(panic, reply): Self::Msg,
        generation: &mut u32,
    ) -> Result<(), ActorProcessingErr> {
        if panic {
            panic!("told to");
        }
        if let Some(reply) = reply {
            let _ = reply.send(*generation);
        }
        Ok(())
    }
}

fn policy(max: u32) -> SupervisionConfig {
    let mut p = SupervisionConfig::default();
    p.max_restarts = max;
    p.backoff = Duration::from_millis(10);
    p.backoff_max = Duration::from_millis(40);
    p
}

async fn start(
    max: u32,
) -> (
    ActorSlot<Poke>,
    SupervisorHandle,
    tokio::task::JoinHandle<()>,
) {
    let slot: Arc<std::sync::OnceLock<ActorSlot<_>>> = Arc::default();
    let starts = Arc::new(AtomicU32::new(0));
    let child_slot = Arc::clone(&slot);
    let spec = ChildSpec {
        name: "fragile".into(),
        outlives: false,
        start: Arc::new(move |sup| {
            let slot = Arc::clone(&child_slot);
            let generation = starts.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let (actor, _) = Actor::spawn_linked(None, Fragile, generation, sup)
                    .await
                    .map_err(|e| e.to_string())?;
                match slot.get() {
                    Some(s) => s.set(actor.clone()),
                    None => {
                        let _ = slot.set(ActorSlot::new(actor.clone()));
                    }
                }
                Ok(actor.get_cell())
            })
        }),
    };
    let (sup, done) = Actor::spawn(
        None,
        RootSupervisor,
        SupervisorArgs {
            children: vec![spec],
            policy: policy(max),
        },
    )
    .await
    .unwrap();
    (
        slot.get().unwrap().clone(),
        SupervisorHandle::new(sup),
        done,
    )
}

async fn generation(slot: &ActorSlot<Poke>) -> Option<u32> {
    match slot
        .get()
        .call(|r| Poke(false, Some(r)), Some(Duration::from_secs(1)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(g)) => Some(g),
        _ => None,
    }
}

#[tokio::test]
async fn a_panicking_child_is_restarted_and_its_handle_keeps_working() {
    let (slot, sup, _done) = start(3).await;
    assert_eq!(generation(&slot).await, Some(0));
    slot.get().cast(Poke(true, None)).unwrap();
    // The restart comes after the backoff; the slot then holds the new one.
    let mut seen = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = generation(&slot).await;
        if seen == Some(1) {
            break;
        }
    }
    assert_eq!(seen, Some(1));
    let children = sup.children().await;
    assert_eq!(
        (
            children[0].name.as_ref(),
            children[0].alive,
            children[0].restarts
        ),
        ("fragile", true, 1)
    );
    sup.stop();
}

#[tokio::test]
async fn too_many_failures_escalate_by_stopping_the_supervisor() {
    let (slot, _sup, done) = start(2).await;
    for expected in 0..3 {
        // Wait for generation `expected` (each failure so far restarted the
        // child), then make it fail.
        let mut reached = false;
        for _ in 0..100 {
            if generation(&slot).await == Some(expected) {
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(reached, "generation {expected} of the child never answered");
        let _ = slot.get().cast(Poke(true, None));
    }
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .expect("the supervisor stops after the third failure")
        .unwrap();
}

/// Where a child started by the test is found.
type Started = Arc<std::sync::OnceLock<ActorRef<Poke>>>;

/// A child that outlives the supervisor (the ModelHost, the worker pools)
/// is unlinked when it stops, not killed with it; the others die with it.
#[tokio::test]
async fn a_child_that_outlives_the_supervisor_survives_its_stop() {
    let spec = |name: &'static str, outlives: bool, cell: Started| ChildSpec {
        name: name.into(),
        outlives,
        start: Arc::new(move |sup| {
            let cell = Arc::clone(&cell);
            Box::pin(async move {
                let (actor, _) = Actor::spawn_linked(None, Fragile, 0, sup)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = cell.set(actor.clone());
                Ok(actor.get_cell())
            })
        }),
    };
    let (kept, lost): (Started, Started) = (Arc::default(), Arc::default());
    let (sup, done) = Actor::spawn(
        None,
        RootSupervisor,
        SupervisorArgs {
            children: vec![
                spec("kept", true, Arc::clone(&kept)),
                spec("lost", false, Arc::clone(&lost)),
            ],
            policy: policy(3),
        },
    )
    .await
    .unwrap();
    SupervisorHandle::new(sup).stop();
    done.await.unwrap();
    let lost = lost.get().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), lost.get_cell().wait(None)).await;
    assert_eq!(
        lost.get_status(),
        ractor::ActorStatus::Stopped,
        "the linked child died with it"
    );
    let kept = kept.get().unwrap();
    let answer = kept
        .call(|r| Poke(false, Some(r)), Some(Duration::from_secs(5)))
        .await;
    assert!(
        matches!(answer, Ok(ractor::rpc::CallResult::Success(0))),
        "{answer:?}"
    );
    kept.stop(None);
}
