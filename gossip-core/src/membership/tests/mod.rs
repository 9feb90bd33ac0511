//! Tests of the CYCLON core: scripted rules, bounds under arbitrary input, the wire bound
//! against bincode, and 1,000-node scenarios on a virtual clock.

mod bounds;
mod scenarios;
mod scripted;
mod sim;
mod wire;
