//! The route table: every endpoint, its access level and its handler, matched with `matchit`.
//!
//! The table is the single list of endpoints: the router is built from it, and a test checks
//! it against the OpenAPI document (`openapi.json`) in both directions.

use http::Method;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (`/health`, for load balancers and the Vrooli lifecycle).
    Public,
    /// Any valid token.
    Read,
    /// A token that is not read-only (creates, restores, deletes, changes).
    Write,
}

/// Handlers, one per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Handler {
    Health,
    Metrics,
    OpenApi,
    BackupCreate,
    BackupStatus,
    BackupList,
    BackupJob,
    BackupVerify,
    RestoreCreate,
    RestoreStatus,
    RestorePointList,
    RestorePointCreate,
    ScheduleList,
    ScheduleCreate,
    ScheduleGet,
    ScheduleUpdate,
    ScheduleDelete,
    ScheduleEnable,
    ScheduleDisable,
    Events,
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method (`GET`, `POST`, `PUT`, `DELETE`).
    pub method: &'static str,
    /// Path in `matchit` (and OpenAPI) syntax: `/api/v1/backup/jobs/{id}`.
    pub path: &'static str,
    /// Access level.
    pub access: Access,
    /// Handler.
    pub handler: Handler,
}

const fn r(method: &'static str, path: &'static str, access: Access, handler: Handler) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// Every endpoint of the API (PRD "API Contract", plus list, verify, restore status, restore
/// points, schedules, events, metrics and the OpenAPI document).
pub const ROUTES: &[Route] = &[
    r("GET", "/health", Access::Public, Handler::Health),
    r("GET", "/metrics", Access::Read, Handler::Metrics),
    r(
        "GET",
        "/api/v1/openapi.json",
        Access::Read,
        Handler::OpenApi,
    ),
    r(
        "POST",
        "/api/v1/backup/create",
        Access::Write,
        Handler::BackupCreate,
    ),
    r(
        "GET",
        "/api/v1/backup/status",
        Access::Read,
        Handler::BackupStatus,
    ),
    r(
        "GET",
        "/api/v1/backup/list",
        Access::Read,
        Handler::BackupList,
    ),
    r(
        "GET",
        "/api/v1/backup/jobs/{id}",
        Access::Read,
        Handler::BackupJob,
    ),
    r(
        "POST",
        "/api/v1/backup/verify/{id}",
        Access::Read,
        Handler::BackupVerify,
    ),
    r(
        "POST",
        "/api/v1/restore/create",
        Access::Write,
        Handler::RestoreCreate,
    ),
    r(
        "GET",
        "/api/v1/restore/status/{id}",
        Access::Read,
        Handler::RestoreStatus,
    ),
    r(
        "GET",
        "/api/v1/restore-points",
        Access::Read,
        Handler::RestorePointList,
    ),
    r(
        "POST",
        "/api/v1/restore-points",
        Access::Write,
        Handler::RestorePointCreate,
    ),
    r(
        "GET",
        "/api/v1/schedules",
        Access::Read,
        Handler::ScheduleList,
    ),
    r(
        "POST",
        "/api/v1/schedules",
        Access::Write,
        Handler::ScheduleCreate,
    ),
    r(
        "GET",
        "/api/v1/schedules/{id}",
        Access::Read,
        Handler::ScheduleGet,
    ),
    r(
        "PUT",
        "/api/v1/schedules/{id}",
        Access::Write,
        Handler::ScheduleUpdate,
    ),
    r(
        "DELETE",
        "/api/v1/schedules/{id}",
        Access::Write,
        Handler::ScheduleDelete,
    ),
    r(
        "POST",
        "/api/v1/schedules/{id}/enable",
        Access::Write,
        Handler::ScheduleEnable,
    ),
    r(
        "POST",
        "/api/v1/schedules/{id}/disable",
        Access::Write,
        Handler::ScheduleDisable,
    ),
    r("POST", "/api/v1/events", Access::Write, Handler::Events),
];

/// Path router: path → the routes (one per method) registered on it.
pub struct Router {
    inner: matchit::Router<Vec<Route>>,
}

/// The outcome of matching a request.
pub enum Match {
    /// A route, with the `{id}` parameter if the path has one.
    Found(Route, Option<String>),
    /// The path exists but not with this method; the allowed methods.
    MethodNotAllowed(Vec<&'static str>),
    /// No such path.
    NotFound,
}

impl Router {
    /// Builds the router from [`ROUTES`].
    pub fn new() -> Router {
        let mut by_path: Vec<(&'static str, Vec<Route>)> = Vec::new();
        for route in ROUTES {
            match by_path.iter_mut().find(|(p, _)| *p == route.path) {
                Some((_, v)) => v.push(*route),
                None => by_path.push((route.path, vec![*route])),
            }
        }
        let mut inner = matchit::Router::new();
        for (path, routes) in by_path {
            inner
                .insert(path, routes)
                .unwrap_or_else(|e| panic!("route table: {path}: {e}"));
        }
        Router { inner }
    }

    /// Matches a method and path.
    pub fn find(&self, method: &Method, path: &str) -> Match {
        let Ok(m) = self.inner.at(path) else {
            return Match::NotFound;
        };
        let id = m.params.get("id").map(str::to_string);
        match m.value.iter().find(|r| r.method == method.as_str()) {
            Some(r) => Match::Found(*r, id),
            None => Match::MethodNotAllowed(m.value.iter().map(|r| r.method).collect()),
        }
    }
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}
