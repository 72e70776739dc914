//! The route table: every path the server answers, in one place.

use actix_web::web;

use super::error::method_not_allowed;
use super::ops;

/// Registers every route. A known path asked with another method answers 405 (a problem document).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/healthz", ops::get_health))
        .service(get("/readyz", ops::get_readiness))
        .service(get("/metrics", ops::get_metrics))
        .service(get("/version", ops::get_version));
}

fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(method_not_allowed))
}
