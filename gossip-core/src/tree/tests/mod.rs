//! Tests of the tree core: scripted exchanges between a few cores (graft, prune, stall
//! rotation, reconnect cost, loss repair, backpressure, splitting), property tests, and
//! many-node scenarios on a virtual clock.

mod props;
mod scenarios;
mod scripted;
mod sim;
