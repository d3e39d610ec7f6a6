//! The web UI (`ui_config.enabled`, `-ui`): a few static files compiled into the binary,
//! served at `/ui/` as Consul's UI is. Every path under `/ui/` that is not a file is the
//! app itself (`index.html`), so deep links (`/ui/dc2/services/web`) and the browser's back
//! button work; `/` redirects to `/ui/`. The app talks only to the public `/v1` API.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../ui/index.html");
const APP: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");

/// The UI's routes.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { to_ui() }))
        .route("/ui", get(|| async { to_ui() }))
        .route("/ui/", get(|| async { index() }))
        .route(
            "/ui/assets/app.js",
            get(|| async { file(APP, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/assets/style.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/assets/{*rest}",
            get(|| async { StatusCode::NOT_FOUND }),
        )
        .route("/ui/{*rest}", get(|| async { index() }))
}

/// Consul's redirect of `/` to the UI (301).
fn to_ui() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, HeaderValue::from_static("/ui/"))],
    )
        .into_response()
}

fn index() -> Response {
    let mut response = file(INDEX, "text/html; charset=utf-8");
    // The app's files come from this agent only.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
        ),
    );
    response
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
