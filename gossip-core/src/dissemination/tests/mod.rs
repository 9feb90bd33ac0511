//! Tests of the dissemination core: scripted single-core and few-core exchanges, bounds under
//! flooding, property tests, and multi-node scenarios on a virtual clock.

mod scenarios;
mod sim;
