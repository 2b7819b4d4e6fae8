//! Operations shared by the HTTP API (`backup-server`) and the CLI in both of its modes: the
//! PRD's API contract expressed as library calls, so that the server stays a thin shell and a
//! command prints the same thing whether it ran locally or through the server.
//!
//! * [`backup`] — `POST /api/v1/backup/create` (queue jobs, estimate their duration) and the
//!   snapshot listing of `GET /api/v1/backup/list` / `list`.
//! * [`verify`] — `POST /api/v1/backup/verify/{id}`: read back a job's snapshot.
//! * [`restore`] — `POST /api/v1/restore/create`, restore points, and the runner that does the
//!   restore work outside the request.
//! * [`metrics`] — `GET /metrics` in the Prometheus text format.
//! * [`status`] — `GET /api/v1/backup/status` / `status`: repository figures and health.
//! * [`shutdown`] — what happens to running work when the server stops.

pub mod backup;
pub mod metrics;
pub mod restore;
pub mod shutdown;
pub mod status;
pub mod verify;
