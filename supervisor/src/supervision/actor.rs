//! The supervisor's actor: one ractor actor that owns the [`State`] and handles its
//! messages one at a time.

use ractor::{ActorProcessingErr, ActorRef as CellRef};

use super::SupervisorExit;
use super::message::Msg;
use super::state::{State, watch_exit};
use crate::process::Process;

pub(super) struct SupervisorActor;

impl ractor::Actor for SupervisorActor {
    type Msg = Msg;
    type State = State;
    type Arguments = State;

    async fn pre_start(
        &self,
        myself: CellRef<Msg>,
        mut state: State,
    ) -> Result<State, ActorProcessingErr> {
        state.myself = Some(myself.clone());
        // The first children started before the actor existed: watch them now.
        for slot in &state.slots {
            if let Some(Ok(sentinel)) = slot.process.as_ref().map(Process::sentinel) {
                watch_exit(
                    myself.clone(),
                    slot.spec.id.clone(),
                    slot.incarnation,
                    sentinel,
                );
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _: CellRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Exited {
                id,
                incarnation,
                reason,
            } => state.on_exit(id, incarnation, reason).await,
            Msg::RestartDue { due, ran_for } => state.on_restart_due(due, ran_for).await,
            Msg::Which(tx) => {
                let _ = tx.send(state.which());
            }
            Msg::Count(tx) => {
                let _ = tx.send(state.count());
            }
            Msg::StartChild(spec, tx) => {
                let _ = tx.send(state.admin_start(spec).await);
            }
            Msg::Terminate(id, tx) => {
                let _ = tx.send(state.admin_terminate(id).await);
            }
            Msg::Restart(id, tx) => {
                let _ = tx.send(state.admin_restart(id).await);
            }
            Msg::Delete(id, tx) => {
                let _ = tx.send(state.admin_delete(id));
            }
            Msg::Shutdown => state.finish(SupervisorExit::Shutdown).await,
            Msg::Resolve { id, wait, reply } => state.resolve(&id, wait, reply),
            Msg::Hosted(id, tx) => {
                let _ = tx.send(state.hosted(id));
            }
            Msg::Nest(id, tx) => {
                let _ = tx.send(state.nest(id));
            }
        }
        Ok(())
    }
}
