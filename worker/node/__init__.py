"""The serve process: the node service (SCP, completion, STOW-RS, HTTP), the sweeper, retention
and the operations on jobs it offers (requeue, cancel)."""
