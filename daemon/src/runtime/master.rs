//! Functions run for a central engine (MasterSP): inputs fetched from the remote tier, outputs
//! stored there, the result sent back to the caller instead of to this daemon's engine.

use super::{ExecReply, Execute, Runtime};

impl Runtime {
    pub(super) fn execute(&mut self, request: Execute, reply: ExecReply) {
        reply(Err(format!(
            "step {} of `{}`: this daemon cannot execute functions for a central engine yet",
            request.node.index(),
            request.workflow
        )));
    }
}
