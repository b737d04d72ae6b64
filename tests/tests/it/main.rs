//! The black-box suites, linked into one test binary: each suite is a module. One binary instead of fifteen
//! keeps the link time and the target directory small (every suite links the whole platform).

mod actions;
mod api;
mod bodies;
mod cli;
mod contracts;
mod egress;
mod embedders;
mod kafka;
mod leases;
mod llm;
mod loader;
mod observability;
mod orchestrator;
mod paraphrase;
mod search;
mod search_index;
mod shutdown;
mod split;
mod sync;
mod web;
mod webhooks;
