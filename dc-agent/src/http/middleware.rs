//! The API's middleware (request counting, the ACL guard, routing by consistency) as plain
//! functions: `f(&api, request, rest)` decides what it can at once and returns the future
//! that answers, often the rest of the stack's own.
//!
//! axum's `from_fn` keeps, for as long as a request runs, a boxed future holding the
//! request's parts, its extractors, a second copy of the request and the function's state:
//! about 1.3 KiB per layer, which a blocking query parked for minutes paid three times over.
//! Here a layer that only passes a request on costs nothing, and one that waits holds only
//! what it needs.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures_util::FutureExt;
use tower::util::BoxCloneSyncService;
use tower::Service;

use super::Api;

/// The rest of the stack, under a layer.
pub type Rest = BoxCloneSyncService<Request, Response, Infallible>;

/// What a layer returns: the answer to come.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// A layer's function.
pub type Middleware = fn(&Api, Request, Rest) -> Answer;

/// Passes `request` on to the rest of the stack (axum's routes are always ready, as axum's
/// own `Next::run` assumes).
pub fn run(mut rest: Rest, request: Request) -> Answer {
    rest.call(request)
}

/// Passes `request` on and waits for the answer.
pub async fn finish(rest: Rest, request: Request) -> Response {
    match run(rest, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// An answer computed by `future` (held once: an `async` block awaiting it would keep it
/// twice).
pub fn boxed(future: impl Future<Output = Response> + Send + 'static) -> Answer {
    Box::pin(future.map(Ok))
}

/// A [`Middleware`] as a tower layer.
#[derive(Clone)]
pub struct Layer {
    api: Api,
    f: Middleware,
}

impl Layer {
    /// `f` with `api`.
    pub fn new(api: Api, f: Middleware) -> Layer {
        Layer { api, f }
    }
}

impl<S> tower::Layer<S> for Layer
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Service = Layered;

    fn layer(&self, inner: S) -> Layered {
        Layered {
            api: self.api.clone(),
            f: self.f,
            rest: BoxCloneSyncService::new(inner),
        }
    }
}

/// A [`Middleware`] over the rest of the stack.
#[derive(Clone)]
pub struct Layered {
    api: Api,
    f: Middleware,
    rest: Rest,
}

impl Service<Request> for Layered {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.rest.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Answer {
        (self.f)(&self.api, request, self.rest.clone())
    }
}
