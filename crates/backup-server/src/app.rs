//! The application: state shared by all requests and the request pipeline
//! (route → authenticate → authorize → read body → handler).

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::auth::{Auth, Caller};
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::http::Reply;
use crate::routes::{Access, Match, Router};

/// What a handler gets.
pub struct Ctx {
    /// The authenticated caller (`None` on public routes).
    pub caller: Option<Caller>,
    /// The `{id}` path parameter.
    pub id: Option<String>,
    /// The raw query string.
    pub query: Option<String>,
    /// The request body (size-limited).
    pub body: bytes::Bytes,
}

impl Ctx {
    /// The audit user: the token's name.
    pub fn user(&self) -> String {
        self.caller
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "anonymous".into())
    }

    /// The `{id}` parameter.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }
}

/// Shared state.
pub struct App {
    /// Resolved settings.
    pub config: ServerConfig,
    auth: Auth,
    router: Router,
    /// The backup service (catalog, scheduler, repository, events, health).
    pub core: Arc<crate::core::Core>,
}

impl App {
    /// Builds the app.
    pub fn new(config: ServerConfig, core: Arc<crate::core::Core>) -> App {
        App {
            auth: Auth::new(&config.tokens),
            router: Router::new(),
            config,
            core,
        }
    }

    /// Runs one request; returns the reply and the caller's token name (for the log).
    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> (Reply, Option<String>) {
        let (parts, body) = req.into_parts();
        // CORS preflight: answered without a token (browsers send none); the CORS headers are
        // only added for configured origins.
        if parts.method == Method::OPTIONS {
            return (
                Reply {
                    status: StatusCode::NO_CONTENT,
                    content_type: "text/plain",
                    body: bytes::Bytes::new(),
                },
                None,
            );
        }
        let (route, id) = match self.router.find(&parts.method, parts.uri.path()) {
            Match::Found(r, id) => (r, id),
            Match::MethodNotAllowed(allowed) => {
                let e = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!(
                        "{} {}: allowed methods: {}",
                        parts.method,
                        parts.uri.path(),
                        allowed.join(", ")
                    ),
                );
                return (Reply::error(&e), None);
            }
            Match::NotFound => {
                let e = ApiError::not_found(format!("no endpoint {}", parts.uri.path()));
                return (Reply::error(&e), None);
            }
        };
        let caller = if route.access == Access::Public {
            None
        } else {
            match self.auth.authenticate(&parts.headers) {
                Ok(c) => Some(c),
                Err(e) => return (Reply::error(&e), None),
            }
        };
        let user = caller.as_ref().map(|c| c.name.clone());
        if route.access == Access::Write {
            if let Some(Err(e)) = caller.as_ref().map(Caller::require_write) {
                return (Reply::error(&e), user);
            }
        }
        let body = match crate::http::read_body(body, self.config.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return (Reply::error(&e), user),
        };
        let ctx = Ctx {
            caller,
            id,
            query: parts.uri.query().map(str::to_string),
            body,
        };
        let reply = match crate::handlers::dispatch(self, route.handler, ctx).await {
            Ok(r) => r,
            Err(e) => Reply::error(&e),
        };
        (reply, user)
    }
}
