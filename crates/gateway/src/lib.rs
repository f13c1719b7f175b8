//! # mcpgate
//!
//! The gateway as a library: configuration built into a plan ([`config`]), the app composed
//! from it ([`server::prepare`], [`server::start`]) and run ([`server::run`]), the MCP-aware
//! proxy ([`proxy`]), the upstreams ([`upstream`]) and the operational parts. The `mcpgate`
//! binary is a thin `main` over [`commands`].

pub mod audit;
pub mod auth;
pub mod budget;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod dns_rebinding;
pub mod endpoint;
pub mod health;
pub mod jsonrpc;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod refusal;
pub mod server;
pub mod session;
pub mod threads;
pub mod upstream;
pub(crate) mod wake;
