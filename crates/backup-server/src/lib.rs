//! `backup-server`: the reference HTTP API of data-backup-manager (PRD "API Contract"), on
//! port 20010 by default, and the host of the scheduler.
//!
//! A thin shell over `backup-core`: it authenticates (bearer tokens, [`auth`]), routes
//! ([`routes`], `matchit`), parses and validates request shapes ([`http`]), calls the core, and
//! answers JSON. Every backup decision — what a job does, when it runs, how health is
//! computed — lives in the core. The OpenAPI document of the routes is `openapi.json` next to
//! this crate's `Cargo.toml`, served at `/api/v1/openapi.json`; `docs/api.md` is generated
//! from it ([`apidoc`]).

#![warn(missing_docs)]

pub mod apidoc;
pub mod app;
pub mod auth;
pub mod config;
pub mod core;
pub mod error;
pub mod handlers;
pub mod http;
pub mod routes;
pub mod server;

/// The OpenAPI 3 document of the API.
pub const OPENAPI: &str = include_str!("../openapi.json");
