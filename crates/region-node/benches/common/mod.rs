//! Code the benches share. Each bench is its own crate and uses part of
//! it, so what one leaves unused is not dead.
#![allow(dead_code)]

pub mod generate;
