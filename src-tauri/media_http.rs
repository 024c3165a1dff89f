//! Audio and video for the web view on Linux. WebKitGTK's media backend (GStreamer) cannot
//! read a custom URI scheme: `<video>` and `<audio>` pointed at `ferry://` fail with
//! `MEDIA_ERR_SRC_NOT_SUPPORTED` whatever the answer (tauri#3725, found by the desktop E2E).
//! So media elements get the very same engine answers (`Libraries::serve_media`: ids only,
//! Range, 404/416/503) over HTTP on 127.0.0.1 instead; pictures and `fetch` keep `ferry://`.
//!
//! Other programs on this machine, and web pages in a browser, can reach a loopback port, so:
//! - every URL carries a random 128-bit token (`/TOKEN/file/LIB/ENTRY`) that only the app's
//!   pages know; anything else is 404;
//! - the `Host` header must be `127.0.0.1:PORT` (a page on a rebound DNS name is refused);
//! - `GET` and `HEAD` only; no CORS headers, so no other origin's script can read an answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tauri::{AppHandle, Manager, Runtime};

use crate::AppState;

/// Where media elements fetch from: `http://127.0.0.1:PORT/TOKEN`.
#[derive(Clone)]
pub struct MediaHttp {
    pub base: String,
    token: String,
    port: u16,
}

/// The engine path a request asks for, if it carries the token and our own `Host`.
pub fn engine_path<'a>(
    path: &'a str,
    host: Option<&str>,
    token: &str,
    port: u16,
) -> Option<&'a str> {
    if host != Some(format!("127.0.0.1:{port}").as_str()) {
        return None;
    }
    let rest = path.strip_prefix('/')?.strip_prefix(token)?;
    (rest.starts_with("/file/") || rest.starts_with("/thumb/")).then_some(rest)
}

/// Binds 127.0.0.1 on a free port and serves there for as long as the app runs.
pub async fn start<R: Runtime>(app: AppHandle<R>) -> std::io::Result<MediaHttp> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let port = listener.local_addr()?.port();
    let token: String = ferry_core::library::wire::random::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let me = MediaHttp {
        base: format!("http://127.0.0.1:{port}/{token}"),
        token,
        port,
    };
    let server = me.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors, say: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (app, server) = (app.clone(), server.clone());
            tauri::async_runtime::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (app, server) = (app.clone(), server.clone());
                    async move { Ok::<_, Infallible>(answer(&app, &server, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .max_buf_size(16 << 10)
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(me)
}

async fn answer<R: Runtime, B>(
    app: &AppHandle<R>,
    server: &MediaHttp,
    req: Request<B>,
) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let Some(path) = engine_path(req.uri().path(), host, &server.token, server.port) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only");
    }
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .map(str::to_owned);
    let Some(state) = app.try_state::<AppState>() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the node is starting");
    };
    let backend = state.backend.read().await.clone();
    let r = backend.media(path, range, head).await;
    let mut b = Response::builder().status(r.status);
    for (name, value) in &r.headers {
        b = b.header(name, value);
    }
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(r.body)
    };
    b.body(Full::new(body))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad answer"))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_token_and_host_reach_the_engine() {
        let ok = Some("127.0.0.1:4000");
        assert_eq!(
            engine_path("/abc/file/L/E", ok, "abc", 4000),
            Some("/file/L/E")
        );
        assert_eq!(
            engine_path("/abc/thumb/L/C", ok, "abc", 4000),
            Some("/thumb/L/C")
        );
        assert_eq!(
            engine_path("/abd/file/L/E", ok, "abc", 4000),
            None,
            "wrong token"
        );
        assert_eq!(engine_path("/file/L/E", ok, "abc", 4000), None, "no token");
        assert_eq!(engine_path("/abcfile/L/E", ok, "abc", 4000), None);
        assert_eq!(engine_path("/abc/other", ok, "abc", 4000), None);
        for host in [
            None,
            Some("localhost:4000"),
            Some("evil.example:4000"),
            Some("127.0.0.1:4001"),
        ] {
            assert_eq!(
                engine_path("/abc/file/L/E", host, "abc", 4000),
                None,
                "{host:?}"
            );
        }
    }
}
