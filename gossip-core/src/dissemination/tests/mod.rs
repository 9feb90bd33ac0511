//! Tests of the dissemination core: scripted single-core and few-core exchanges, bounds under
//! flooding, property tests, and multi-node scenarios on a virtual clock.

mod bounds;
mod scenarios;
mod scripted;
mod sim;
