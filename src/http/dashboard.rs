//! The dashboard's files: `GET /` is its page, `GET /ui/<file>` its scripts and styles. They are built
//! into the binary (see `build.rs`); `server.dashboard_dir` serves them from a folder instead, so the
//! dashboard can be worked on without rebuilding. The dashboard holds no data of its own: everything it
//! shows comes from the REST API and the WebSocket, with the caller's token.

use std::path::Path;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// Every file under `src/dashboard/`, by its path there (`app.js`, `pages/fleet.js`).
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/dashboard_files.rs"));

/// Scripts and styles come only from this server; the page talks only to it (REST and WebSocket).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard's page.
#[utoipa::path(get, path = "/", tag = "dashboard", responses(
    (status = 200, description = "The dashboard's HTML page", content_type = "text/html", body = String),
    (status = 304, description = "Unchanged since the `If-None-Match` ETag")))]
pub async fn get_index(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&req, &state, "index.html").await
}

/// One of the dashboard's scripts, styles or images.
#[utoipa::path(get, path = "/ui/{file}", tag = "dashboard",
    params(("file" = String, Path, description = "The file's path, e.g. `app.js` or `pages/fleet.js`")),
    responses(
        (status = 200, description = "The file, with its content type", content_type = "application/octet-stream", body = String),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag")))]
pub async fn get_asset(
    req: HttpRequest,
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    serve(&req, &state, &file).await
}

async fn serve(req: &HttpRequest, state: &AppState, name: &str) -> Result<HttpResponse, ApiError> {
    let missing = || ApiError::NotFound(format!("the dashboard has no file {name}"));
    // Names that could leave the folder (`..`, absolute, hidden) are refused in both modes alike.
    if !name.split('/').all(|part| !part.is_empty() && !part.starts_with('.') && !part.contains('\\')) {
        return Err(missing());
    }
    let body = match &state.settings.server.dashboard_dir {
        Some(dir) => from_folder(dir, name).await?.ok_or_else(missing)?,
        None => {
            let built_in = FILES.iter().find(|(file, _)| *file == name).map(|(_, body)| *body);
            Bytes::from_static(built_in.ok_or_else(missing)?)
        }
    };
    let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&Sha256::digest(&body)[..12]));
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CONTENT_TYPE, content_type(name)))
        // Always revalidated (cheap with the ETag): a new server version is picked up at the next load.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    Ok(if unchanged { response.finish() } else { response.body(body) })
}

/// A file of the dashboard folder: `None` when there is none; a file that cannot be read is a 500.
async fn from_folder(dir: &Path, name: &str) -> Result<Option<Bytes>, ApiError> {
    let path = dir.join(name);
    let read = web::block(move || std::fs::read(path)).await.map_err(|e| ApiError::Internal(e.into()))?;
    match read {
        Ok(body) => Ok(Some(Bytes::from(body))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!("cannot read the dashboard file {name}: {e}"))),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_files_are_built_in_as_they_are_in_the_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dashboard");
        for name in ["index.html", "app.js", "live.js"] {
            let built_in = FILES.iter().find(|(file, _)| *file == name).map(|(_, body)| body.to_vec());
            assert_eq!(built_in, std::fs::read(root.join(name)).ok(), "{name}");
        }
        assert!(FILES.iter().all(|(name, _)| !name.contains('\\') && !name.starts_with('/')));
    }

    #[test]
    fn each_kind_of_file_gets_its_type() {
        assert_eq!(content_type("pages/fleet.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
    }
}
