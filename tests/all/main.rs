//! End-to-end tests: each starts real `host serve` processes.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used, missing_docs)]

mod adapters;
mod cli;
mod clients;
mod config;
mod docker;
mod gateway;
mod limits;
mod mcp;
mod mesh;
mod messaging;
mod proxy;
mod serve;
mod socket;
mod vault;
mod wallet;
mod warm;
mod world;
