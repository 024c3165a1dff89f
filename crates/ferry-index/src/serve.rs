//! Answers for the app's `ferry://` URI scheme: a file or a thumbnail, with byte ranges so the
//! webview's `<video>` and `<audio>` can seek. Independent of any HTTP crate; the desktop glue
//! copies a [`Response`] into its own type.
//!
//! Decisions, and why:
//! - **Nothing from a library runs as a document in the app.** The app's origin can call the
//!   app's commands, and files come from other people's devices. So HTML, SVG, XML,
//!   JavaScript and CSS are served as `text/plain` (their source is shown, never rendered), every
//!   answer says `X-Content-Type-Options: nosniff` so the type is not guessed upwards, and
//!   every answer carries `Content-Security-Policy: sandbox`, which only matters if a file is
//!   opened as a document: it then runs in a unique origin with scripts off. Images and media
//!   embedded in the app's own pages are unaffected by it.
//! - **Bodies are in memory, so they are bounded.** A `Range` answer holds at most
//!   [`MAX_BODY`] bytes, and an open-ended one (`bytes=a-`, what media elements send) at most
//!   [`RANGE_CHUNK`]: a shorter 206 is valid HTTP (`Content-Range` says what was sent) and
//!   media elements ask again from there. A request *without* `Range` must get the whole file
//!   (HTTP has no "here is the start" answer to it), so a file over [`MAX_BODY`] asked for
//!   without `Range` gets 413 telling the client to use ranges (no status means "too large to
//!   send whole"; 413 says it most plainly). Media elements always send `Range` and never see
//!   it. 64 MiB because several answers can be in flight at once (a grid of pictures) and the
//!   webview glue may copy each body once more.
//! - **A malformed `bytes` range is refused with 416**, not served whole: it can only come
//!   from a bug in our own glue or UI, and shipping a whole (maybe large) file hides it. RFC
//!   9110 allows either. Ranges in a unit other than `bytes` are ignored (the RFC requires it),
//!   and so are multiple ranges (allowed; no webview sends them).
//! - Only the requested bytes are read (seek, then read), never the whole file for a range.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::thumb::{ThumbFormat, ThumbStore};

/// Largest body of any answer, in bytes.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Largest answer to an open-ended range (`bytes=a-`).
pub const RANGE_CHUNK: u64 = 8 * 1024 * 1024;

/// An HTTP-like answer. Header names are case-insensitive in HTTP; here they are written in
/// their usual capitalisation.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .finish()
    }
}

/// How long the webview may keep an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// The URL names content that never changes (a thumbnail by content id): keep it forever.
    Immutable,
    /// The URL names a path whose content may change: ask again each time.
    Revalidate,
}

impl Caching {
    fn header(self) -> &'static str {
        match self {
            Caching::Immutable => "public, max-age=31536000, immutable",
            Caching::Revalidate => "no-cache",
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The `Content-Type` for a file, from its extension (case-insensitive);
/// `application/octet-stream` when unknown. Types a webview would execute (HTML, SVG, XML,
/// JavaScript, CSS) are `text/plain`: see the module documentation.
pub fn content_type(path: &Path) -> &'static str {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return "application/octet-stream";
    };
    match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" | "jfif" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "bmp" => "image/bmp",
        "ico" => "image/x-icon",
        "tif" | "tiff" => "image/tiff",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "avi" => "video/x-msvideo",
        "ogv" => "video/ogg",
        "mpg" | "mpeg" => "video/mpeg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        // Plain text, and the types that would run code if rendered.
        "txt" | "text" | "md" | "markdown" | "log" | "ini" | "toml" | "yaml" | "yml" | "rs"
        | "c" | "h" | "py" | "sh" | "html" | "htm" | "xhtml" | "shtml" | "svg" | "svgz" | "xml"
        | "xsl" | "xslt" | "js" | "mjs" | "css" => TEXT,
        _ => "application/octet-stream",
    }
}

/// Answers a request for the file at `path`, served as `content_type`, honouring a `Range`
/// header value if given (see the module documentation for what is and is not honoured).
pub fn serve_file(
    path: &Path,
    content_type: &str,
    range: Option<&str>,
    caching: Caching,
) -> Response {
    serve_file_as(path, content_type, range, caching, None, false)
}

/// [`serve_file`] with an `ETag` (a content id, quoted here) and, for `HEAD`, no body read.
pub fn serve_file_as(
    path: &Path,
    content_type: &str,
    range: Option<&str>,
    caching: Caching,
    etag: Option<&str>,
    head: bool,
) -> Response {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return open_error(path, &e),
    };
    let len = match file.metadata() {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => return not_found("not a file"),
        Err(e) => return open_error(path, &e),
    };
    let wanted = match plan(range, len) {
        Ok(w) => w,
        Err(refusal) => return refusal,
    };
    let (first, count) = wanted.map_or((0, len), |(first, last)| (first, last - first + 1));
    let body = if head {
        Vec::new()
    } else {
        match read_at(&mut file, first, count) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read file to serve");
                return text(500, "cannot read the file");
            }
        }
    };
    answer(
        content_type,
        body,
        count,
        wanted.map(|w| (w, len)),
        caching,
        etag,
    )
}

/// What to send of a representation `len` bytes long for a `Range` header value: `None` for
/// the whole of it, inclusive bounds for a part, or the refusal (416 for a bad range, 413 for
/// a whole body over [`MAX_BODY`]).
pub fn plan(range: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, Response> {
    match range.map(|r| parse_range(r, len)) {
        None | Some(Requested::Whole) if len > MAX_BODY => {
            let mut response = text(
                413,
                &format!("file is larger than {MAX_BODY} bytes: ask for it with a Range header"),
            );
            response.headers.push(("Accept-Ranges", "bytes".into()));
            Err(response)
        }
        None | Some(Requested::Whole) => Ok(None),
        Some(Requested::Range { first, last }) => Ok(Some((first, last))),
        Some(Requested::Unsatisfiable) => {
            tracing::debug!(range, len, "unsatisfiable range");
            Err(unsatisfiable(len))
        }
    }
}

/// 416 for a representation `len` bytes long.
pub fn unsatisfiable(len: u64) -> Response {
    let mut response = text(416, "range not satisfiable");
    response.headers.push(("Accept-Ranges", "bytes".into()));
    response
        .headers
        .push(("Content-Range", format!("bytes */{len}")));
    response
}

/// A 200 (whole) or 206 (`part`: its inclusive bounds and the whole length) answer of
/// `count` bytes; `body` is empty for `HEAD`, else those bytes.
pub fn answer(
    content_type: &str,
    body: Vec<u8>,
    count: u64,
    part: Option<((u64, u64), u64)>,
    caching: Caching,
    etag: Option<&str>,
) -> Response {
    let mut headers = vec![
        ("Content-Type", content_type.to_owned()),
        ("Content-Length", count.to_string()),
        ("Accept-Ranges", "bytes".to_owned()),
        ("Cache-Control", caching.header().to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        ("Content-Security-Policy", "sandbox".to_owned()),
    ];
    if let Some(tag) = etag {
        headers.push(("ETag", format!("\"{tag}\"")));
    }
    if let Some(((first, last), len)) = part {
        headers.push(("Content-Range", format!("bytes {first}-{last}/{len}")));
    }
    Response {
        status: if part.is_some() { 206 } else { 200 },
        headers,
        body,
    }
}

/// 503 with the reason a page can show (`<device> is offline`).
pub fn unavailable(why: &str) -> Response {
    text(503, why)
}

/// Answers a request for the thumbnail of content `cas_hex`: immutable, so cached forever.
pub fn serve_thumbnail(store: &ThumbStore, cas_hex: &str, range: Option<&str>) -> Response {
    if store.path_for(cas_hex, ThumbFormat::Webp).is_none() {
        return bad_request("invalid content id");
    }
    match store.find(cas_hex) {
        Some((path, format)) => serve_file_as(
            &path,
            format.mime(),
            range,
            Caching::Immutable,
            Some(cas_hex),
            false,
        ),
        None => not_found("no thumbnail"),
    }
}

/// 404 with `what` as a short text body.
pub fn not_found(what: &str) -> Response {
    text(404, what)
}

/// 400 with `what` as a short text body.
pub fn bad_request(what: &str) -> Response {
    text(400, what)
}

/// A short text answer that nothing may cache (the next request may succeed).
fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("Content-Type", TEXT.to_owned()),
            ("Content-Length", body.len().to_string()),
            ("Cache-Control", "no-store".to_owned()),
            ("X-Content-Type-Options", "nosniff".to_owned()),
            ("Content-Security-Policy", "sandbox".to_owned()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

fn open_error(path: &Path, e: &io::Error) -> Response {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => not_found("no such file"),
        io::ErrorKind::IsADirectory => not_found("not a file"),
        io::ErrorKind::PermissionDenied => {
            tracing::debug!(path = %path.display(), "permission denied");
            text(403, "permission denied")
        }
        _ => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open file to serve");
            text(500, "cannot open the file")
        }
    }
}

/// Reads exactly `count` bytes at `offset`. A file that shrank since its length was taken is
/// an error: the headers already promise `count` bytes.
fn read_at(file: &mut File, offset: u64, count: u64) -> io::Result<Vec<u8>> {
    let capacity = usize::try_from(count)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "range too large"))?;
    let mut body = Vec::new();
    body.try_reserve_exact(capacity)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "cannot allocate the body"))?;
    file.seek(SeekFrom::Start(offset))?;
    file.take(count).read_to_end(&mut body)?;
    if body.len() != capacity {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being served",
        ));
    }
    Ok(body)
}

/// What a `Range` header asks of a representation `len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    /// No usable range: answer with the whole file.
    Whole,
    /// Inclusive bounds, within the file and within the body limits.
    Range { first: u64, last: u64 },
    /// 416.
    Unsatisfiable,
}

fn parse_range(header: &str, len: u64) -> Requested {
    let Some((unit, spec)) = header.split_once('=') else {
        return Requested::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Requested::Whole;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Requested::Unsatisfiable;
    };
    match (number(first), number(last)) {
        // bytes=-n: the last n bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                return Requested::Unsatisfiable;
            }
            let first = len - n.min(len);
            Requested::Range {
                first,
                last: (len - 1).min(first + (MAX_BODY - 1)),
            }
        }
        // bytes=a-
        (Some(first), None) if last.is_empty() => {
            if first >= len {
                return Requested::Unsatisfiable;
            }
            Requested::Range {
                first,
                last: (len - 1).min(first.saturating_add(RANGE_CHUNK - 1)),
            }
        }
        // bytes=a-b
        (Some(first), Some(last)) if first <= last => {
            if first >= len {
                return Requested::Unsatisfiable;
            }
            Requested::Range {
                first,
                last: last.min(len - 1).min(first.saturating_add(MAX_BODY - 1)),
            }
        }
        _ => Requested::Unsatisfiable,
    }
}

/// A non-empty run of ASCII digits; values past `u64::MAX` saturate (they are past any file's
/// end, and RFC 9110 asks that long numbers be handled, not rejected).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;
    use std::path::PathBuf;
    use tempfile::TempDir;

    const MIB: u64 = 1024 * 1024;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    fn file_of(dir: &TempDir, len: usize) -> (PathBuf, Vec<u8>) {
        let bytes = data(len);
        let path = dir.path().join(format!("f{len}.bin"));
        fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    fn sparse(dir: &TempDir, len: u64) -> PathBuf {
        let path = dir.path().join(format!("sparse{len}"));
        File::create(&path).unwrap().set_len(len).unwrap();
        path
    }

    fn get(path: &Path, range: Option<&str>) -> Response {
        serve_file(path, "application/octet-stream", range, Caching::Revalidate)
    }

    /// Headers every answer must carry, and a Content-Length that matches the body.
    fn check_common(r: &Response) {
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("content-security-policy"), Some("sandbox"));
        assert!(r.header("content-type").is_some());
        assert!(r.header("cache-control").is_some());
    }

    fn partial(r: &Response, first: u64, last: u64, len: u64) {
        check_common(r);
        assert_eq!(r.status, 206, "{r:?}");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {first}-{last}/{len}").as_str())
        );
        assert_eq!(r.body.len() as u64, last - first + 1);
    }

    fn unsatisfiable(r: &Response, len: u64) {
        check_common(r);
        assert_eq!(r.status, 416, "{r:?}");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes */{len}").as_str())
        );
    }

    #[test]
    fn whole_file() {
        let dir = TempDir::new().unwrap();
        let (path, bytes) = file_of(&dir, 100);
        let r = serve_file(&path, "image/png", None, Caching::Revalidate);
        check_common(&r);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, bytes);
        assert_eq!(r.header("Content-Type"), Some("image/png"));
        assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
        assert_eq!(r.header("Cache-Control"), Some("no-cache"));
        assert_eq!(r.header("Content-Range"), None);
    }

    #[test]
    fn range_forms() {
        let dir = TempDir::new().unwrap();
        let (path, bytes) = file_of(&dir, 100);
        let cases = [
            ("bytes=0-9", 0, 9),
            ("bytes=10-10", 10, 10),
            ("bytes=5-", 5, 99),
            ("bytes=99-", 99, 99),
            ("bytes=-10", 90, 99),
            ("bytes=-100", 0, 99),
            ("bytes=-1000", 0, 99),
            ("bytes=5-1000000", 5, 99),
            ("bytes=0-99999999999999999999999999", 0, 99),
            ("Bytes=1-2", 1, 2),
            (" bytes = 3-4 ", 3, 4),
        ];
        for (header, first, last) in cases {
            let r = get(&path, Some(header));
            partial(&r, first, last, 100);
            assert_eq!(r.body, bytes[first as usize..=last as usize], "{header}");
        }
    }

    #[test]
    fn unsatisfiable_and_malformed_ranges() {
        let dir = TempDir::new().unwrap();
        let (path, _) = file_of(&dir, 100);
        for header in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=99999999999999999999999-",
            "bytes=-0",
            // Malformed.
            "bytes=abc",
            "bytes=5-3",
            "bytes=-",
            "bytes=",
            "bytes=+5-6",
            "bytes=5--6",
            "bytes=0x1-2",
            "bytes=1 -2",
            "bytes=٣-4",
            "0-5",
        ] {
            unsatisfiable(&get(&path, Some(header)), 100);
        }
    }

    #[test]
    fn ignored_ranges_give_the_whole_file() {
        let dir = TempDir::new().unwrap();
        let (path, bytes) = file_of(&dir, 100);
        for header in [
            "bytes=0-1,5-6",
            "bytes=0-1, 200-300",
            "items=0-5",
            "none=0-1",
        ] {
            let r = get(&path, Some(header));
            check_common(&r);
            assert_eq!(r.status, 200, "{header}");
            assert_eq!(r.body, bytes);
        }
    }

    #[test]
    fn empty_file() {
        let dir = TempDir::new().unwrap();
        let (path, _) = file_of(&dir, 0);
        let r = get(&path, None);
        check_common(&r);
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        for header in ["bytes=0-", "bytes=0-0", "bytes=-5"] {
            unsatisfiable(&get(&path, Some(header)), 0);
        }
    }

    #[test]
    fn missing_and_unreadable() {
        let dir = TempDir::new().unwrap();
        let r = get(&dir.path().join("missing"), None);
        check_common(&r);
        assert_eq!(r.status, 404);
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        assert_eq!(get(&dir.path().join("missing/below"), None).status, 404);
        assert_eq!(get(dir.path(), None).status, 404);
        let (file, _) = file_of(&dir, 3);
        assert_eq!(get(&file.join("below"), None).status, 404);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
            // Only the file's mode may refuse: its folder is open to all.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let r = as_nobody(|| get(&file, None));
            check_common(&r);
            assert_eq!(r.status, 403);
        }
    }

    /// Runs `f` on a thread of its own whose file system checks are those of `nobody`: root
    /// reads any file, so the unreadable-file case never ran in CI (which runs as root). The
    /// file system user id is per thread on Linux, and leaving 0 drops the thread's capabilities
    /// to override permissions; as another user nothing changes (it cannot read 0o000 either).
    #[cfg(unix)]
    fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        #[cfg(target_os = "linux")]
        const NOBODY: u32 = 65534;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: geteuid and setfsuid have no preconditions; setfsuid affects only
                // this thread, which ends with `f`.
                #[cfg(target_os = "linux")]
                if unsafe { libc::geteuid() } == 0 {
                    unsafe { libc::setfsuid(NOBODY) };
                    // setfsuid reports no error; asked for an invalid id it returns the current one.
                    assert_eq!(unsafe { libc::setfsuid(u32::MAX) }, NOBODY as i32);
                }
                f()
            })
            .join()
            .unwrap()
        })
    }

    #[test]
    fn open_ended_ranges_come_in_chunks() {
        let dir = TempDir::new().unwrap();
        let len = 20 * MIB;
        let path = sparse(&dir, len);
        partial(&get(&path, Some("bytes=0-")), 0, RANGE_CHUNK - 1, len);
        let r = get(&path, Some(&format!("bytes={RANGE_CHUNK}-")));
        partial(&r, RANGE_CHUNK, 2 * RANGE_CHUNK - 1, len);
        let r = get(&path, Some(&format!("bytes={}-", 2 * RANGE_CHUNK)));
        partial(&r, 2 * RANGE_CHUNK, len - 1, len);
        // A closed range is honoured in full up to MAX_BODY.
        partial(
            &get(&path, Some(&format!("bytes=0-{}", len - 1))),
            0,
            len - 1,
            len,
        );
        let r = get(&path, Some(&format!("bytes=1-{}", len - 2)));
        partial(&r, 1, len - 2, len);
    }

    #[test]
    fn bodies_are_bounded() {
        let dir = TempDir::new().unwrap();
        let len = MAX_BODY + 1;
        let path = sparse(&dir, len);
        let r = get(&path, None);
        check_common(&r);
        assert_eq!(r.status, 413);
        assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
        partial(&get(&path, Some("bytes=0-")), 0, RANGE_CHUNK - 1, len);
        partial(
            &get(&path, Some(&format!("bytes=1-{len}"))),
            1,
            MAX_BODY,
            len,
        );
        partial(
            &get(&path, Some(&format!("bytes=-{len}"))),
            0,
            MAX_BODY - 1,
            len,
        );
        // Exactly MAX_BODY is still served whole.
        let path = sparse(&dir, MAX_BODY);
        let r = get(&path, None);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len() as u64, MAX_BODY);
    }

    #[test]
    fn thumbnails_are_immutable() {
        let dir = TempDir::new().unwrap();
        let store = ThumbStore::new(dir.path());
        store.put("abcd", b"RIFF....WEBP").unwrap();
        let r = serve_thumbnail(&store, "abcd", None);
        check_common(&r);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"RIFF....WEBP");
        assert_eq!(r.header("Content-Type"), Some("image/webp"));
        assert_eq!(
            r.header("Cache-Control"),
            Some("public, max-age=31536000, immutable")
        );
        partial(
            &serve_thumbnail(&store, "abcd", Some("bytes=4-7")),
            4,
            7,
            12,
        );
        assert_eq!(serve_thumbnail(&store, "abce", None).status, 404);
        store.put("abce", &[0xFF, 0xD8, 0xFF, 0xDB]).unwrap();
        let r = serve_thumbnail(&store, "abce", None);
        assert_eq!(
            (r.status, r.header("Content-Type")),
            (200, Some("image/jpeg"))
        );
        let r = serve_thumbnail(&store, "../abcd", None);
        check_common(&r);
        assert_eq!(r.status, 400);
    }

    #[test]
    fn error_helpers() {
        let r = not_found("no such thing");
        check_common(&r);
        assert_eq!((r.status, r.body.as_slice()), (404, &b"no such thing"[..]));
        let r = bad_request("bad id");
        check_common(&r);
        assert_eq!((r.status, r.body.as_slice()), (400, &b"bad id"[..]));
        assert_eq!(r.header("content-type"), Some(TEXT));
    }

    #[test]
    fn content_types() {
        let ct = |name: &str| content_type(Path::new(name));
        assert_eq!(ct("a.jpg"), "image/jpeg");
        assert_eq!(ct("a.JPEG"), "image/jpeg");
        assert_eq!(ct("a.png"), "image/png");
        assert_eq!(ct("a.webp"), "image/webp");
        assert_eq!(ct("a.mp4"), "video/mp4");
        assert_eq!(ct("a.MOV"), "video/quicktime");
        assert_eq!(ct("a.mp3"), "audio/mpeg");
        assert_eq!(ct("a.flac"), "audio/flac");
        assert_eq!(ct("a.pdf"), "application/pdf");
        assert_eq!(ct("a.json"), "application/json");
        assert_eq!(ct("notes.txt"), TEXT);
        for active in [
            "a.html", "a.HTM", "a.svg", "a.xhtml", "a.xml", "a.js", "a.css",
        ] {
            assert_eq!(ct(active), TEXT, "{active}");
        }
        for unknown in ["a", "a.exe", "a.", ".bashrc", "a.tar.zst"] {
            assert_eq!(ct(unknown), "application/octet-stream", "{unknown}");
        }
    }

    #[test]
    fn number_parsing() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("007"), Some(7));
        assert_eq!(number("18446744073709551615"), Some(u64::MAX));
        assert_eq!(number("99999999999999999999999"), Some(u64::MAX));
        for bad in ["", "-1", "+1", " 1", "1 ", "1_0", "١"] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// For every range form and any bounds: a 206 carries exactly the file's bytes its
        /// Content-Range names, within the file; a 416 only when nothing is satisfiable.
        #[test]
        fn ranges_match_the_file(
            len in 0usize..3000,
            a in 0u64..4000,
            b in 0u64..4000,
            form in 0u8..3,
        ) {
            let dir = TempDir::new().unwrap();
            let (path, bytes) = file_of(&dir, len);
            let len = len as u64;
            let header = match form {
                0 => format!("bytes={a}-{b}"),
                1 => format!("bytes={a}-"),
                _ => format!("bytes=-{b}"),
            };
            let r = get(&path, Some(&header));
            check_common(&r);
            let satisfiable = match form {
                0 => a <= b && a < len,
                1 => a < len,
                _ => b > 0 && len > 0,
            };
            if !satisfiable {
                prop_assert_eq!(r.status, 416);
                let expected = format!("bytes */{len}");
                prop_assert_eq!(r.header("Content-Range"), Some(expected.as_str()));
                return Ok(());
            }
            prop_assert_eq!(r.status, 206);
            let content_range = r.header("Content-Range").unwrap();
            let (bounds, total) = content_range
                .strip_prefix("bytes ")
                .and_then(|s| s.split_once('/'))
                .unwrap();
            prop_assert_eq!(total.parse::<u64>().unwrap(), len);
            let (first, last) = bounds.split_once('-').unwrap();
            let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
            prop_assert!(first <= last && last < len);
            let expected = match form {
                0 => (a, b.min(len - 1)),
                1 => (a, len - 1),
                _ => (len - b.min(len), len - 1),
            };
            prop_assert_eq!((first, last), expected);
            prop_assert_eq!(&r.body[..], &bytes[first as usize..=last as usize]);
        }
    }
}
