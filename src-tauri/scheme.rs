//! The `ferry://` URI scheme: thumbnails and original files of this node's libraries, by id
//! (`ferry://localhost/thumb/LIB/CONTENT`, `ferry://localhost/file/LIB/ENTRY`; on Windows the
//! webview spells it `http://ferry.localhost/…`), this node's or another member's alike. The
//! engine decides every answer (`Libraries::serve_media`: ids only, where the bytes are,
//! Range, 404/416/503); this maps it to the webview's HTTP
//! types, off the UI thread, and adds CORS for the app's own pages so `fetch` works too.

use tauri::http::{header, Method, Request, Response, StatusCode};
use tauri::{Manager, Runtime, UriSchemeContext, UriSchemeResponder};

use crate::backend::MediaAnswer;
use crate::AppState;

/// Origins the app's own pages are served from (bundled; Windows).
const APP_ORIGINS: &[&str] = &[
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

/// `tauri dev` serves the pages from Vite; only debug builds trust it.
const DEV_ORIGIN: &str = "http://localhost:5173";

fn trusted(origin: &str) -> bool {
    APP_ORIGINS.contains(&origin) || (cfg!(debug_assertions) && origin == DEV_ORIGIN)
}

pub fn handle<R: Runtime>(
    ctx: UriSchemeContext<'_, R>,
    req: Request<Vec<u8>>,
    responder: UriSchemeResponder,
) {
    let app = ctx.app_handle().clone();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .map(str::to_owned);
    tauri::async_runtime::spawn(async move {
        let answer = if method == Method::OPTIONS {
            preflight()
        } else if method != Method::GET && method != Method::HEAD {
            plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only")
        } else if let Some(state) = app.try_state::<AppState>() {
            let backend = state.backend.read().await.clone();
            let head = method == Method::HEAD;
            convert(backend.media(&path, range, head).await, head)
        } else {
            plain(StatusCode::SERVICE_UNAVAILABLE, "the node is starting")
        };
        responder.respond(with_cors(answer, origin.as_deref()));
    });
}

fn convert(r: MediaAnswer, head: bool) -> Response<Vec<u8>> {
    let mut b = Response::builder().status(r.status);
    for (name, value) in &r.headers {
        b = b.header(name, value);
    }
    let body = if head { Vec::new() } else { r.body };
    b.body(body)
        .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

fn plain(status: StatusCode, text: &str) -> Response<Vec<u8>> {
    let mut r = Response::new(text.as_bytes().to_vec());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn preflight() -> Response<Vec<u8>> {
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::HeaderValue::from_static("GET, HEAD"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::HeaderValue::from_static("Range"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        header::HeaderValue::from_static("600"),
    );
    r
}

/// Only the app's own pages may read answers from script; `<img>` and `<video>` need no CORS.
fn with_cors(mut r: Response<Vec<u8>>, origin: Option<&str>) -> Response<Vec<u8>> {
    // Always, so an answer cached from an `<img>` (no Origin) is not reused for a `fetch`.
    r.headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("Origin"));
    let allowed = origin.filter(|o| trusted(o));
    if let Some(v) = allowed.and_then(|o| header::HeaderValue::from_str(o).ok()) {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::HeaderValue::from_static("Content-Range, Content-Length, Accept-Ranges"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_answers_keep_status_headers_and_body() {
        let r = || MediaAnswer {
            status: 206,
            headers: vec![
                ("Content-Range".into(), "bytes 0-1/10".into()),
                ("Content-Type".into(), "image/webp".into()),
            ],
            body: vec![1, 2],
        };
        let out = convert(r(), false);
        assert_eq!(out.status(), 206);
        assert_eq!(out.headers()["content-range"], "bytes 0-1/10");
        assert_eq!(out.body(), &vec![1, 2]);
        assert!(convert(r(), true).body().is_empty(), "HEAD has no body");
    }

    #[test]
    fn only_the_apps_own_origins_get_cors() {
        let ok = with_cors(plain(StatusCode::OK, "x"), Some("tauri://localhost"));
        assert_eq!(
            ok.headers()["access-control-allow-origin"],
            "tauri://localhost"
        );
        for other in [None, Some("https://example.com"), Some("null")] {
            let r = with_cors(plain(StatusCode::OK, "x"), other);
            assert!(
                r.headers().get("access-control-allow-origin").is_none(),
                "{other:?}"
            );
        }
    }
}
