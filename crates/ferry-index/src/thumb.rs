//! Thumbnails: a small picture for each picture, stored once per content id.
//!
//! Opaque pictures (nearly all photos) become JPEG at quality 80, transparent ones lossless
//! WebP (the only WebP encoder `image` has): on 4 MP photos lossless WebP averaged 62 KB a
//! thumbnail against 8.5–23 KB for JPEG, about 6 GB more per 100,000 photos, for no difference
//! visible at 256 px. Every webview reads both.
//!
//! Pictures come from other people's devices, so every input is untrusted: the format is
//! sniffed from the bytes (an extension says nothing), the file size, the pixel dimensions and
//! the decoder's memory are bounded before any pixel is decoded, and no input can panic the
//! caller. Thumbnails are keyed by content id, so a picture present in several libraries (or
//! twice in one) has exactly one thumbnail file.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageError, ImageFormat, ImageReader};

/// Longest side of a thumbnail, in pixels.
pub const THUMB_MAX: u32 = 256;

/// Files larger than this are not thumbnailed. Some decoders (JPEG) read the whole file into
/// memory first, so this bounds that copy; no real photo comes near it.
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Largest accepted width and height. Checked from the header, before decoding.
pub const MAX_DIMENSION: u32 = 20_000;

/// Largest decoded image (and decoder working memory) in bytes. A 20 000 × 20 000 picture
/// passes [`MAX_DIMENSION`] but would need 1.2 GB as RGB; this catches it. Photos up to about
/// 170 megapixels (RGB) fit.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// Extensions [`thumbnail`] is worth trying on. The decision to *try* is by name (cheap, no
/// I/O, used by the indexer to pick candidates); the decoding itself trusts only the bytes.
pub(crate) const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "gif"];

/// Whether a file's extension is one we make thumbnails for (case-insensitive).
pub fn is_thumbnailable(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// JPEG quality of opaque thumbnails.
pub const JPEG_QUALITY: u8 = 80;

/// How a thumbnail is encoded; told apart by its first bytes, so the store needs no index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThumbFormat {
    Jpeg,
    Webp,
}

impl ThumbFormat {
    pub const ALL: [ThumbFormat; 2] = [ThumbFormat::Jpeg, ThumbFormat::Webp];

    /// JPEG if `bytes` start like one (`FF D8 FF`), else WebP.
    pub fn of(bytes: &[u8]) -> ThumbFormat {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            ThumbFormat::Jpeg
        } else {
            ThumbFormat::Webp
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ThumbFormat::Jpeg => "jpg",
            ThumbFormat::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ThumbFormat::Jpeg => "image/jpeg",
            ThumbFormat::Webp => "image/webp",
        }
    }
}

/// A thumbnail: encoded bytes (see [`ThumbFormat`]) and their dimensions (orientation already
/// applied).
#[derive(Clone, PartialEq, Eq)]
pub struct Thumb {
    pub format: ThumbFormat,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Debug for Thumb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thumb")
            .field("format", &self.format)
            .field("bytes", &self.bytes.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Why a file got no thumbnail. Every variant but `Io` and `Encode` is a property of the file,
/// so the indexer can record it and not try again until the content changes.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
    #[error("not a picture we can thumbnail: {0}")]
    Unsupported(String),
    #[error("damaged or invalid picture: {0}")]
    Decode(String),
    #[error("picture too large to thumbnail: {0}")]
    TooLarge(String),
    #[error("cannot encode the thumbnail: {0}")]
    Encode(String),
}

/// Makes a thumbnail of the picture at `path`: at most [`THUMB_MAX`] pixels on its longest
/// side (never enlarged), upright per its EXIF orientation, first frame of an animation;
/// JPEG if opaque, lossless WebP if any pixel is transparent.
pub fn thumbnail(path: &Path) -> Result<Thumb, ThumbError> {
    // The decoders are third-party code fed hostile bytes; a panic in one of them must cost
    // one thumbnail, not the indexer thread.
    match panic::catch_unwind(AssertUnwindSafe(|| thumbnail_inner(path))) {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(path = %path.display(), "image decoder panicked");
            Err(ThumbError::Decode("the decoder failed on this file".into()))
        }
    }
}

fn thumbnail_inner(path: &Path) -> Result<Thumb, ThumbError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_INPUT_BYTES {
        return Err(ThumbError::TooLarge(format!(
            "{len} bytes (limit {MAX_INPUT_BYTES})"
        )));
    }
    if len == 0 {
        return Err(ThumbError::Decode("empty file".into()));
    }

    let mut reader = ImageReader::new(BufReader::new(file)).with_guessed_format()?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif) => {}
        Some(other) => return Err(ThumbError::Unsupported(format!("{other:?} format"))),
        None => return Err(ThumbError::Unsupported("unrecognised format".into())),
    }
    reader.limits(limits());

    // Building the decoder reads only the header (plus, for JPEG, the raw file); the
    // dimension limit is enforced there. Checked again here so the bound does not depend on
    // each decoder honouring `Limits`.
    let mut decoder = reader.into_decoder().map_err(from_image)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ThumbError::Decode(format!("{width}×{height} image")));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ThumbError::TooLarge(format!(
            "{width}×{height} pixels (limit {MAX_DIMENSION} per side)"
        )));
    }
    let needed = decoder.total_bytes();
    if needed > MAX_DECODE_BYTES {
        return Err(ThumbError::TooLarge(format!(
            "{width}×{height} pixels need {needed} bytes decoded (limit {MAX_DECODE_BYTES})"
        )));
    }

    // Damaged EXIF is common (editors, old cameras) and should not cost the thumbnail.
    let orientation = decoder.orientation().unwrap_or_else(|e| {
        tracing::debug!(path = %path.display(), error = %e, "unreadable orientation, ignored");
        Orientation::NoTransforms
    });
    let image = DynamicImage::from_decoder(decoder).map_err(from_image)?;

    // Orientation is applied after shrinking: rotating 256 px costs nothing, rotating the full
    // picture costs a copy of it. The longest side is the same either way.
    let mut small = shrink(image);
    small.apply_orientation(orientation);
    encode(&small)
}

/// Largest thumbnail accepted from a member. Ours stay far below it: 256 px as lossless WebP
/// is at most about 260 KB.
pub const MAX_RECEIVED_BYTES: usize = 1024 * 1024;

/// Checks a thumbnail a member sent before it is stored or served: JPEG or WebP by its bytes,
/// at most [`MAX_RECEIVED_BYTES`], and it decodes, within [`THUMB_MAX`] pixels a side and a
/// few MB of decoder memory, so a member cannot plant a decompression bomb or a file that is
/// not a picture in the store.
pub fn check_received(bytes: &[u8]) -> Result<ThumbFormat, ThumbError> {
    if bytes.len() > MAX_RECEIVED_BYTES {
        return Err(ThumbError::TooLarge(format!(
            "{} bytes (limit {MAX_RECEIVED_BYTES})",
            bytes.len()
        )));
    }
    let (format, image_format) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        (ThumbFormat::Jpeg, ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        (ThumbFormat::Webp, ImageFormat::WebP)
    } else {
        return Err(ThumbError::Unsupported(
            "not a JPEG or WebP thumbnail".into(),
        ));
    };
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut reader = ImageReader::with_format(io::Cursor::new(bytes), image_format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(THUMB_MAX);
        limits.max_image_height = Some(THUMB_MAX);
        limits.max_alloc = Some(u64::from(THUMB_MAX) * u64::from(THUMB_MAX) * 4 * 4);
        reader.limits(limits);
        reader.decode().map_err(from_image)
    }));
    match decoded {
        Ok(Ok(image)) if image.width() > 0 && image.height() > 0 => Ok(format),
        Ok(Ok(_)) => Err(ThumbError::Decode("empty picture".into())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ThumbError::Decode(
            "the decoder failed on this thumbnail".into(),
        )),
    }
}

fn limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Size that fits `width`×`height` within [`THUMB_MAX`] keeping the aspect ratio, never larger
/// than the original and never 0.
fn fit(width: u32, height: u32) -> (u32, u32) {
    let (w, h, max) = (u64::from(width), u64::from(height), u64::from(THUMB_MAX));
    if w <= max && h <= max {
        return (width, height);
    }
    let scale = |short: u64, long: u64| ((short * max + long / 2) / long).clamp(1, max);
    // Both results are ≤ THUMB_MAX, so the conversions cannot fail.
    let (tw, th) = if w >= h {
        (max, scale(h, w))
    } else {
        (scale(w, h), max)
    };
    (
        u32::try_from(tw).unwrap_or(THUMB_MAX),
        u32::try_from(th).unwrap_or(THUMB_MAX),
    )
}

/// Shrinks to [`fit`]. `thumbnail_exact` averages every source pixel into exactly one target
/// pixel (a box filter in integer arithmetic). For the large reductions photos need (×10 for
/// 4 MP, ×16 for 12 MP) averaging whole blocks leaves no visible aliasing and is a little
/// sharper than the triangle filter, and it is about 3× faster (9 ms against 26 ms for 4 MP,
/// see `examples/thumb_bench.rs`): resizing is the largest cost after decoding. Near 1:1 a box
/// filter aliases, so reductions under 2× use the triangle filter.
fn shrink(image: DynamicImage) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    let (tw, th) = fit(w, h);
    if (tw, th) == (w, h) {
        return image;
    }
    if w >= 2 * tw && h >= 2 * th {
        image.thumbnail_exact(tw, th)
    } else {
        image.resize_exact(tw, th, image::imageops::FilterType::Triangle)
    }
}

/// Encodes as lossless WebP if some pixel is actually transparent (an alpha channel that is
/// opaque everywhere does not count), else as JPEG.
fn encode(image: &DynamicImage) -> Result<Thumb, ThumbError> {
    let (width, height) = (image.width(), image.height());
    let mut bytes = Vec::new();
    let rgba = image.color().has_alpha().then(|| image.to_rgba8());
    let (format, result) = match rgba {
        Some(rgba) if rgba.pixels().any(|p| p.0[3] != u8::MAX) => (
            ThumbFormat::Webp,
            WebPEncoder::new_lossless(&mut bytes).encode(
                rgba.as_raw(),
                width,
                height,
                ExtendedColorType::Rgba8,
            ),
        ),
        _ => {
            let rgb = image.to_rgb8();
            (
                ThumbFormat::Jpeg,
                JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).encode(
                    rgb.as_raw(),
                    width,
                    height,
                    ExtendedColorType::Rgb8,
                ),
            )
        }
    };
    result.map_err(|e| ThumbError::Encode(e.to_string()))?;
    Ok(Thumb {
        format,
        bytes,
        width,
        height,
    })
}

fn from_image(e: ImageError) -> ThumbError {
    match e {
        ImageError::Limits(e) => ThumbError::TooLarge(e.to_string()),
        ImageError::Unsupported(e) => ThumbError::Unsupported(e.to_string()),
        // A truncated file surfaces from the decoder as an I/O error; it is damage, not a
        // failing disk.
        ImageError::IoError(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            ThumbError::Decode(e.to_string())
        }
        ImageError::IoError(e) => ThumbError::Io(e),
        other => ThumbError::Decode(other.to_string()),
    }
}

/// Thumbnails on disk, one file per content id: `root/<first 2 hex>/<cas_hex>.<jpg|webp>`. The
/// two-character shard keeps directories small (256 of them) on filesystems that slow down
/// with many entries.
#[derive(Debug, Clone)]
pub struct ThumbStore {
    root: PathBuf,
}

/// Distinguishes temporary files of concurrent `put`s in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
const TEMP_SUFFIX: &str = ".tmp";

impl ThumbStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the thumbnail of content `cas_hex` lives in `format`, or `None` if `cas_hex` is not
    /// 1 to 128 lowercase hex digits. The check is what keeps a content id from a peer (`../x`)
    /// from naming a path outside the store.
    pub fn path_for(&self, cas_hex: &str, format: ThumbFormat) -> Option<PathBuf> {
        let valid = (1..=128).contains(&cas_hex.len())
            && cas_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return None;
        }
        // ASCII only, so any byte index is a char boundary.
        let shard = &cas_hex[..cas_hex.len().min(2)];
        Some(
            self.root
                .join(shard)
                .join(format!("{cas_hex}.{}", format.extension())),
        )
    }

    /// The thumbnail of `cas_hex`, if it exists, and its format. Files appear only whole (see
    /// [`Self::put`]), so existing means complete.
    pub fn find(&self, cas_hex: &str) -> Option<(PathBuf, ThumbFormat)> {
        ThumbFormat::ALL.into_iter().find_map(|f| {
            self.path_for(cas_hex, f)
                .filter(|p| p.is_file())
                .map(|p| (p, f))
        })
    }

    pub fn has(&self, cas_hex: &str) -> bool {
        self.find(cas_hex).is_some()
    }

    /// Where `bytes` go as the thumbnail of `cas_hex`, in the format sniffed from them.
    fn target(&self, cas_hex: &str, bytes: &[u8]) -> io::Result<(PathBuf, ThumbFormat)> {
        let format = ThumbFormat::of(bytes);
        let path = self.path_for(cas_hex, format).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid content id {cas_hex:?}"),
            )
        })?;
        Ok((path, format))
    }

    /// Stores `bytes` as the thumbnail of `cas_hex`, replacing any previous one, and returns
    /// its path. Written to a temporary file in the same directory, flushed to disk, then
    /// renamed over the final name (and the directory flushed), so after a crash the
    /// thumbnail is either the old one, the new one or absent — never torn. Concurrent `put`s
    /// of the same id are harmless: the last rename wins and both wrote the same content.
    /// The format is sniffed from `bytes`; a thumbnail of the same id in the other format is
    /// removed afterwards.
    pub fn put(&self, cas_hex: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let (path, format) = self.target(cas_hex, bytes)?;
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir)?;

        let (temp_path, temp) = create_temp(dir, cas_hex)?;
        if let Err(e) = write_then_rename(temp, bytes, &temp_path, &path) {
            let _ = fs::remove_file(&temp_path);
            return Err(e);
        }
        for other in ThumbFormat::ALL.into_iter().filter(|f| *f != format) {
            if let Some(p) = self.path_for(cas_hex, other) {
                let _ = fs::remove_file(p);
            }
        }
        sync_dir(dir);
        Ok(path)
    }

    /// [`Self::put`] for many thumbnails (members' thumbnails arrive by the hundred): the same
    /// guarantee (each is old, new or absent after a crash, never torn) with one flush of the
    /// filesystem for all their contents and one for all their names, where `put` flushes
    /// each file and its folder (0.5 ms a thumbnail here, three quarters of preview sync's
    /// time). Stops at the first error; those stored before it stay.
    pub fn put_many(&self, items: &[(String, Vec<u8>)]) -> io::Result<()> {
        let mut staged = Vec::with_capacity(items.len());
        let result = (|| {
            for (cas_hex, bytes) in items {
                let (path, format) = self.target(cas_hex, bytes)?;
                let dir = path.parent().unwrap_or(&self.root).to_path_buf();
                fs::create_dir_all(&dir)?;
                let (temp_path, mut temp) = create_temp(&dir, cas_hex)?;
                staged.push((temp_path.clone(), path, cas_hex, format));
                temp.write_all(bytes)?;
            }
            sync_all(&self.root, staged.iter().map(|(t, ..)| t.as_path()))?;
            for (temp_path, path, cas_hex, format) in &staged {
                fs::rename(temp_path, path)?;
                for other in ThumbFormat::ALL.into_iter().filter(|f| f != format) {
                    if let Some(p) = self.path_for(cas_hex, other) {
                        let _ = fs::remove_file(p);
                    }
                }
            }
            sync_all(&self.root, staged.iter().map(|(_, p, ..)| p.as_path()))
        })();
        if result.is_err() {
            for (temp_path, ..) in &staged {
                let _ = fs::remove_file(temp_path);
            }
        }
        result
    }

    /// Marks `cas_hex`'s thumbnail as used now (its modification time), for [`Self::evict`]:
    /// at most once an hour per thumbnail, so serving a grid writes next to nothing.
    pub fn touch(&self, cas_hex: &str) {
        let Some((path, _)) = self.find(cas_hex) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let stale = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_or(true, |t| {
                now.duration_since(t).unwrap_or_default().as_secs() > 3600
            });
        if stale {
            let _ = File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(now));
        }
    }

    /// The store's thumbnails: content id, size, last use (see [`Self::touch`]).
    pub fn usage(&self) -> io::Result<Vec<(String, u64, std::time::SystemTime)>> {
        let mut out = Vec::new();
        let shards = match fs::read_dir(&self.root) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for shard in shards.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let Some((hex, _)) = name.split_once('.').filter(|_| !name.starts_with('.')) else {
                    continue;
                };
                if let Ok(m) = f.metadata() {
                    let used = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                    out.push((hex.to_owned(), m.len(), used));
                }
            }
        }
        Ok(out)
    }

    /// Brings the store under `cap` bytes (down to 90 % of it, so it is not at the edge at
    /// once again) by deleting the least recently used thumbnails that `keep` does not
    /// protect. Returns what was deleted, and the store's size after.
    pub fn evict(&self, cap: u64, keep: impl Fn(&str) -> bool) -> io::Result<(Vec<String>, u64)> {
        let mut all = self.usage()?;
        let mut total: u64 = all.iter().map(|(_, n, _)| n).sum();
        let mut gone = Vec::new();
        if total <= cap {
            return Ok((gone, total));
        }
        all.sort_by_key(|(_, _, used)| *used);
        let goal = cap / 10 * 9;
        for (hex, len, _) in all {
            if total <= goal {
                break;
            }
            if keep(&hex) {
                continue;
            }
            for f in ThumbFormat::ALL {
                if let Some(p) = self.path_for(&hex, f) {
                    let _ = fs::remove_file(p);
                }
            }
            total = total.saturating_sub(len);
            gone.push(hex);
        }
        Ok((gone, total))
    }

    /// Removes temporary files left by `put`s interrupted by a crash. Call at startup, before
    /// any `put`; returns how many were removed.
    pub fn remove_temp_files(&self) -> io::Result<usize> {
        let shards = match fs::read_dir(&self.root) {
            Ok(shards) => shards,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for shard in shards {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed interrupted thumbnail writes");
        }
        Ok(removed)
    }
}

fn write_then_rename(
    mut temp: File,
    bytes: &[u8],
    temp_path: &Path,
    path: &Path,
) -> io::Result<()> {
    temp.write_all(bytes)?;
    temp.sync_all()?;
    drop(temp);
    fs::rename(temp_path, path)
}

fn create_temp(dir: &Path, cas_hex: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_path = dir.join(format!(".{cas_hex}.{pid}.{n}{TEMP_SUFFIX}"));
        match File::options()
            .write(true)
            .create_new(true)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            // Left by an earlier process with the same pid; take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes `files` (and their names) durable: one `syncfs` of the store's filesystem on Linux, a
/// flush of each file and its folder elsewhere.
fn sync_all<'a>(root: &Path, files: impl Iterator<Item = &'a Path>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let d = File::open(root)?;
        // SAFETY: syncfs on a descriptor we own and keep open for the call.
        if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    let _ = root;
    for f in files {
        File::open(f)?.sync_all()?;
        if let Some(dir) = f.parent() {
            sync_dir(dir);
        }
    }
    Ok(())
}

/// Makes a rename in `dir` durable. Best effort: the thumbnail is already complete, and losing
/// it in a crash only means making it again.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot sync thumbnail directory");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::gif::GifEncoder;
    use image::codecs::jpeg::JpegEncoder;
    use image::{Delay, Frame, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};
    use proptest::prelude::*;
    use tempfile::TempDir;

    fn gradient_rgb(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .unwrap();
        out
    }

    fn png_bytes(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut io::Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Decodes a thumbnail back, checking it really is in the format it says (JPEG exactly
    /// when it has no transparency).
    fn decode_thumb(thumb: &Thumb) -> DynamicImage {
        let reader = ImageReader::new(io::Cursor::new(&thumb.bytes))
            .with_guessed_format()
            .unwrap();
        let want = match thumb.format {
            ThumbFormat::Jpeg => ImageFormat::Jpeg,
            ThumbFormat::Webp => ImageFormat::WebP,
        };
        assert_eq!(reader.format(), Some(want));
        assert_eq!(ThumbFormat::of(&thumb.bytes), thumb.format);
        let img = reader.decode().unwrap();
        assert_eq!((img.width(), img.height()), (thumb.width, thumb.height));
        img
    }

    #[test]
    fn extensions() {
        for name in ["a.jpg", "a.JPEG", "b.Png", "c.webp", "d.GIF", "dir/e.jpeg"] {
            assert!(is_thumbnailable(Path::new(name)), "{name}");
        }
        for name in ["a", "a.txt", "jpg", ".jpg", "a.jpg.bak", "a.tiff", "a.svg"] {
            assert!(!is_thumbnailable(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn fit_sizes() {
        assert_eq!(fit(1000, 500), (256, 128));
        assert_eq!(fit(500, 1000), (128, 256));
        assert_eq!(fit(100, 50), (100, 50));
        assert_eq!(fit(256, 256), (256, 256));
        assert_eq!(fit(257, 1), (256, 1));
        assert_eq!(fit(20_000, 1), (256, 1));
        assert_eq!(fit(2448, 1632), (256, 171));
    }

    #[test]
    fn jpeg_is_shrunk() {
        let dir = TempDir::new().unwrap();
        let path = write(&dir, "a.jpg", &jpeg_bytes(&gradient_rgb(1000, 500)));
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 128));
        let img = decode_thumb(&thumb);
        assert!(!img.color().has_alpha());
    }

    #[test]
    fn png_with_alpha_keeps_alpha() {
        let dir = TempDir::new().unwrap();
        let img = RgbaImage::from_fn(500, 1000, |x, y| {
            Rgba([
                200,
                (x % 256) as u8,
                (y % 256) as u8,
                if x < 250 { 0 } else { 255 },
            ])
        });
        let path = write(&dir, "a.png", &png_bytes(&DynamicImage::ImageRgba8(img)));
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (128, 256));
        let out = decode_thumb(&thumb).to_rgba8();
        assert_eq!(out.get_pixel(5, 100).0[3], 0);
        assert_eq!(out.get_pixel(120, 100).0[3], 255);
    }

    #[test]
    fn opaque_alpha_is_dropped() {
        let dir = TempDir::new().unwrap();
        let img = RgbaImage::from_pixel(300, 300, Rgba([10, 20, 30, 255]));
        let path = write(&dir, "a.png", &png_bytes(&DynamicImage::ImageRgba8(img)));
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 256));
        assert!(!decode_thumb(&thumb).color().has_alpha());
    }

    #[test]
    fn sixteen_bit_grey_png() {
        let dir = TempDir::new().unwrap();
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(600, 300, |x, _| {
            image::Luma([(x * 100) as u16])
        });
        let path = write(&dir, "a.png", &png_bytes(&DynamicImage::ImageLuma16(img)));
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 128));
        decode_thumb(&thumb);
    }

    #[test]
    fn webp_is_shrunk() {
        let dir = TempDir::new().unwrap();
        let img = gradient_rgb(300, 600);
        let mut bytes = Vec::new();
        WebPEncoder::new_lossless(&mut bytes)
            .write_image(img.as_raw(), 300, 600, ExtendedColorType::Rgb8)
            .unwrap();
        let path = write(&dir, "a.webp", &bytes);
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (128, 256));
        decode_thumb(&thumb);
    }

    #[test]
    fn small_gif_is_not_enlarged() {
        let dir = TempDir::new().unwrap();
        let img = RgbaImage::from_fn(100, 50, |x, _| Rgba([(x * 2) as u8, 0, 0, 255]));
        let mut bytes = Vec::new();
        GifEncoder::new(&mut bytes)
            .encode(img.as_raw(), 100, 50, ExtendedColorType::Rgba8)
            .unwrap();
        let path = write(&dir, "a.gif", &bytes);
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (100, 50));
        decode_thumb(&thumb);
    }

    #[test]
    fn animated_gif_gives_first_frame() {
        let dir = TempDir::new().unwrap();
        let red = RgbaImage::from_pixel(400, 200, Rgba([255, 0, 0, 255]));
        let blue = RgbaImage::from_pixel(400, 200, Rgba([0, 0, 255, 255]));
        let mut bytes = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut bytes);
            let delay = Delay::from_numer_denom_ms(100, 1);
            enc.encode_frames([
                Frame::from_parts(red, 0, 0, delay),
                Frame::from_parts(blue, 0, 0, delay),
            ])
            .unwrap();
        }
        let path = write(&dir, "a.gif", &bytes);
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 128));
        let px = decode_thumb(&thumb).to_rgb8().get_pixel(10, 10).0;
        assert!(px[0] > 200 && px[2] < 50, "{px:?}");
    }

    fn riff_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(kind);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
    }

    fn u24(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes()[..3]);
    }

    /// An animated WebP (VP8X + ANIM + one ANMF per frame) of full-canvas lossless frames,
    /// assembled by hand: `image` has no animated WebP encoder.
    fn animated_webp(frames: &[RgbaImage]) -> Vec<u8> {
        let (w, h) = frames[0].dimensions();
        let mut body = b"WEBP".to_vec();
        let mut vp8x = vec![0x02 | 0x10, 0, 0, 0]; // animation, alpha
        u24(&mut vp8x, w - 1);
        u24(&mut vp8x, h - 1);
        riff_chunk(&mut body, b"VP8X", &vp8x);
        riff_chunk(&mut body, b"ANIM", &[0, 0, 0, 0, 0, 0]);
        for frame in frames {
            let mut still = Vec::new();
            WebPEncoder::new_lossless(&mut still)
                .encode(frame.as_raw(), w, h, ExtendedColorType::Rgba8)
                .unwrap();
            // A simple lossless file is RIFF header (12 bytes) + one VP8L chunk.
            assert_eq!(&still[12..16], b"VP8L");
            let mut anmf = Vec::new();
            u24(&mut anmf, 0);
            u24(&mut anmf, 0);
            u24(&mut anmf, w - 1);
            u24(&mut anmf, h - 1);
            u24(&mut anmf, 100);
            anmf.push(0);
            anmf.extend_from_slice(&still[12..]);
            riff_chunk(&mut body, b"ANMF", &anmf);
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn animated_webp_gives_first_frame() {
        let dir = TempDir::new().unwrap();
        let red = RgbaImage::from_pixel(300, 150, Rgba([255, 0, 0, 255]));
        let blue = RgbaImage::from_pixel(300, 150, Rgba([0, 0, 255, 255]));
        let bytes = animated_webp(&[red, blue]);
        // The crafted file really is animated, as `image` sees it.
        let decoder = image::codecs::webp::WebPDecoder::new(io::Cursor::new(&bytes)).unwrap();
        assert!(decoder.has_animation());

        let path = write(&dir, "a.webp", &bytes);
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 128));
        // Frames are composited on a canvas, which may round by one.
        let px = decode_thumb(&thumb).to_rgba8().get_pixel(10, 10).0;
        assert!(
            px[0] >= 250 && px[1] == 0 && px[2] <= 5 && px[3] >= 250,
            "{px:?}"
        );
    }

    #[test]
    fn format_is_sniffed_not_taken_from_the_name() {
        let dir = TempDir::new().unwrap();
        let path = write(
            &dir,
            "really-a-jpeg.png",
            &jpeg_bytes(&gradient_rgb(512, 512)),
        );
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 256));
    }

    /// A minimal APP1 Exif segment: big-endian TIFF header and one IFD entry, Orientation
    /// (0x0112, SHORT) = `value`.
    fn exif_app1(value: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2a");
        tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes());
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&value.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]); // value padding to 4 bytes
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&tiff);
        let mut seg = vec![0xFF, 0xE1];
        seg.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        seg.extend_from_slice(&payload);
        seg
    }

    fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&exif_app1(orientation));
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        let dir = TempDir::new().unwrap();
        // Left half red, right half blue, 600×300.
        let img = RgbImage::from_fn(600, 300, |x, _| {
            if x < 300 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let path = write(&dir, "a.jpg", &with_exif(&jpeg_bytes(&img), 6));
        let thumb = thumbnail(&path).unwrap();
        // 6 = rotate 90° clockwise to display: 600×300 stored is 300×600 shown, the stored
        // left edge (red) on top.
        assert_eq!((thumb.width, thumb.height), (128, 256));
        let out = decode_thumb(&thumb).to_rgb8();
        let top = out.get_pixel(64, 20).0;
        let bottom = out.get_pixel(64, 236).0;
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");

        // Small pictures are rotated too (no resize path).
        let path = write(
            &dir,
            "b.jpg",
            &with_exif(&jpeg_bytes(&gradient_rgb(100, 50)), 6),
        );
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (50, 100));

        // 1 = upright: unchanged.
        let path = write(
            &dir,
            "c.jpg",
            &with_exif(&jpeg_bytes(&gradient_rgb(100, 50)), 1),
        );
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (100, 50));
    }

    #[test]
    fn damaged_exif_is_ignored() {
        let dir = TempDir::new().unwrap();
        let mut seg = exif_app1(6);
        // Point IFD0 far past the end of the segment.
        seg[14..18].copy_from_slice(&0xFFFF_FF00u32.to_be_bytes());
        let jpeg = jpeg_bytes(&gradient_rgb(100, 50));
        let mut bytes = jpeg[..2].to_vec();
        bytes.extend_from_slice(&seg);
        bytes.extend_from_slice(&jpeg[2..]);
        let path = write(&dir, "a.jpg", &bytes);
        let thumb = thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (100, 50));
    }

    #[test]
    fn damaged_inputs_are_errors() {
        let dir = TempDir::new().unwrap();
        let jpeg = jpeg_bytes(&gradient_rgb(400, 300));

        let path = write(&dir, "empty.jpg", b"");
        assert!(matches!(thumbnail(&path), Err(ThumbError::Decode(_))));

        let path = write(&dir, "head.jpg", &jpeg[..100]);
        let err = thumbnail(&path).unwrap_err();
        assert!(matches!(err, ThumbError::Decode(_)), "{err:?}");

        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let path = write(&dir, "noise.png", &noise);
        let err = thumbnail(&path).unwrap_err();
        assert!(matches!(err, ThumbError::Unsupported(_)), "{err:?}");

        let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
        fake_png.extend_from_slice(&noise);
        let path = write(&dir, "fake.png", &fake_png);
        let err = thumbnail(&path).unwrap_err();
        assert!(matches!(err, ThumbError::Decode(_)), "{err:?}");

        let path = write(&dir, "a.bmp.jpg", b"BM\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        let err = thumbnail(&path).unwrap_err();
        assert!(matches!(err, ThumbError::Unsupported(_)), "{err:?}");

        // Cut anywhere: an error or a (partly grey) picture, never a panic.
        for cut in [200, jpeg.len() / 2, jpeg.len() - 2] {
            let path = write(&dir, "cut.jpg", &jpeg[..cut]);
            let _ = thumbnail(&path);
        }

        let err = thumbnail(&dir.path().join("missing.jpg")).unwrap_err();
        assert!(matches!(err, ThumbError::Io(ref e) if e.kind() == io::ErrorKind::NotFound));
        let err = thumbnail(dir.path()).unwrap_err();
        assert!(
            matches!(err, ThumbError::Io(_) | ThumbError::Decode(_)),
            "{err:?}"
        );
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }

    /// A PNG whose header claims `width`×`height` RGBA pixels, with a tiny IDAT.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter, no interlace
        png_chunk(&mut out, b"IHDR", &ihdr);
        // An empty zlib stream: header, final empty stored block, adler32 of nothing.
        png_chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0, 0, 0, 1],
        );
        png_chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn crafted_png_is_valid_up_to_its_data() {
        // Sanity check of the crafting: a small claim passes the header and fails on data.
        let dir = TempDir::new().unwrap();
        let path = write(&dir, "a.png", &png_claiming(10, 10));
        assert!(matches!(thumbnail(&path), Err(ThumbError::Decode(_))));
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let dir = TempDir::new().unwrap();
        for (w, h) in [
            (100_000, 100_000),
            (20_001, 10),
            (10, 20_001),
            (20_000, 20_000),
        ] {
            let path = write(&dir, "bomb.png", &png_claiming(w, h));
            let err = thumbnail(&path).unwrap_err();
            assert!(matches!(err, ThumbError::TooLarge(_)), "{w}×{h}: {err:?}");
        }

        // A JPEG whose frame header claims 65 000 × 65 000.
        let mut jpeg = jpeg_bytes(&gradient_rgb(16, 16));
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline SOF0");
        jpeg[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());
        let path = write(&dir, "bomb.jpg", &jpeg);
        let err = thumbnail(&path).unwrap_err();
        assert!(matches!(err, ThumbError::TooLarge(_)), "{err:?}");
    }

    #[test]
    fn huge_files_are_refused_before_reading() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("huge.jpg");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_INPUT_BYTES + 1).unwrap(); // sparse: costs no disk
        let err = thumbnail(&path).unwrap_err();
        assert!(matches!(err, ThumbError::TooLarge(_)), "{err:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Random damage to valid files of every format: any result but a panic. (`thumbnail`
        /// catches panics, so this also checks no decoder panicked: that would log a warning
        /// and show up as a Decode error, which we cannot tell apart — see the next check.)
        #[test]
        fn damaged_files_never_panic(
            format in 0usize..4,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let img = gradient_rgb(64, 40);
            let mut bytes = match format {
                0 => jpeg_bytes(&img),
                1 => png_bytes(&DynamicImage::ImageRgb8(img)),
                2 => {
                    let mut b = Vec::new();
                    WebPEncoder::new_lossless(&mut b)
                        .encode(img.as_raw(), 64, 40, ExtendedColorType::Rgb8)
                        .unwrap();
                    b
                }
                _ => {
                    let mut b = Vec::new();
                    GifEncoder::new(&mut b)
                        .encode(&DynamicImage::ImageRgb8(img).to_rgba8(), 64, 40, ExtendedColorType::Rgba8)
                        .unwrap();
                    b
                }
            };
            // Keep the magic bytes so the decoder, not the sniffer, sees the damage.
            for (at, value) in edits {
                let i = 12 + at.index(bytes.len() - 12);
                bytes[i] = value;
            }
            let keep = 12 + cut.index(bytes.len() - 11);
            bytes.truncate(keep);
            let dir = TempDir::new().unwrap();
            let path = write(&dir, "x", &bytes);
            let result = panic::catch_unwind(AssertUnwindSafe(|| thumbnail_inner(&path)));
            prop_assert!(result.is_ok(), "decoder panicked on format {format}");
            if let Ok(Ok(thumb)) = result {
                prop_assert!(thumb.width <= THUMB_MAX && thumb.height <= THUMB_MAX);
            }
        }
    }

    #[test]
    fn store_layout_and_validation() {
        let dir = TempDir::new().unwrap();
        let store = ThumbStore::new(dir.path());
        let id = "ab".to_string() + &"0123456789abcdef".repeat(4)[2..];
        assert_eq!(id.len(), 64);
        assert_eq!(
            store.path_for(&id, ThumbFormat::Webp).unwrap(),
            dir.path().join("ab").join(format!("{id}.webp"))
        );
        assert_eq!(
            store.path_for("f", ThumbFormat::Webp).unwrap(),
            dir.path().join("f").join("f.webp")
        );
        assert!(store
            .path_for(&"a".repeat(128), ThumbFormat::Webp)
            .is_some());
        for bad in [
            "",
            "../x",
            "..",
            "ab/cd",
            "AB12",
            "abg0",
            "ab cd",
            "ab\0",
            "é0",
            &"a".repeat(129),
        ] {
            assert!(store.path_for(bad, ThumbFormat::Webp).is_none(), "{bad:?}");
            assert!(!store.has(bad));
            let err = store.put(bad, b"x").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        assert!(
            fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing written"
        );
    }

    #[test]
    fn store_put_has_replace() {
        let dir = TempDir::new().unwrap();
        let store = ThumbStore::new(dir.path().join("thumbs")); // created on demand
        let id = "c0ffee".repeat(10);
        assert!(!store.has(&id));
        let path = store.put(&id, b"first").unwrap();
        assert_eq!(path, store.path_for(&id, ThumbFormat::Webp).unwrap());
        assert!(store.has(&id));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        store.put(&id, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        // Only the thumbnail is left in the shard: no temporary files.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(format!("{id}.webp"))]);
        assert!(!store.has("c0ffee"));
        // Replaced by a JPEG: one file, the JPEG, and `find` says so.
        let jpeg = store.put(&id, &[0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
        assert_eq!(jpeg, store.path_for(&id, ThumbFormat::Jpeg).unwrap());
        assert_eq!(store.find(&id), Some((jpeg, ThumbFormat::Jpeg)));
        assert!(!path.exists(), "the WebP it replaced is gone");
    }

    #[test]
    fn store_removes_interrupted_writes() {
        let dir = TempDir::new().unwrap();
        let store = ThumbStore::new(dir.path());
        assert_eq!(store.remove_temp_files().unwrap(), 0);
        let path = store.put("abcd", b"ok").unwrap();
        let shard = path.parent().unwrap();
        fs::write(shard.join(".abcd.123.0.tmp"), b"torn").unwrap();
        fs::write(dir.path().join("stray-file"), b"").unwrap();
        assert_eq!(store.remove_temp_files().unwrap(), 1);
        assert!(store.has("abcd"));
        assert_eq!(fs::read_dir(shard).unwrap().count(), 1);
        assert_eq!(
            ThumbStore::new(dir.path().join("none"))
                .remove_temp_files()
                .unwrap(),
            0
        );
    }

    #[test]
    fn concurrent_puts_of_one_id() {
        let dir = TempDir::new().unwrap();
        let store = ThumbStore::new(dir.path());
        let bytes = vec![7u8; 100_000];
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10 {
                        store.put("ee", &bytes).unwrap();
                    }
                });
            }
        });
        assert_eq!(
            fs::read(store.path_for("ee", ThumbFormat::Webp).unwrap()).unwrap(),
            bytes
        );
        assert_eq!(fs::read_dir(dir.path().join("ee")).unwrap().count(), 1);
    }

    #[test]
    fn thumbnail_then_store() {
        let dir = TempDir::new().unwrap();
        let path = write(&dir, "a.jpg", &jpeg_bytes(&gradient_rgb(800, 600)));
        let thumb = thumbnail(&path).unwrap();
        let id = blake3::hash(&fs::read(&path).unwrap()).to_hex();
        let store = ThumbStore::new(dir.path().join("thumbs"));
        assert_eq!(thumb.format, ThumbFormat::Jpeg, "an opaque photo");
        let stored = store.put(&id, &thumb.bytes).unwrap();
        assert_eq!(store.find(&id), Some((stored.clone(), ThumbFormat::Jpeg)));
        assert_eq!(fs::read(stored).unwrap(), thumb.bytes);
    }

    #[test]
    fn received_thumbnails_are_checked() {
        let dir = tempfile::TempDir::new().unwrap();
        let big = dir.path().join("big.png");
        image::RgbImage::from_pixel(600, 300, image::Rgb([200, 10, 10]))
            .save(&big)
            .unwrap();
        let t = thumbnail(&big).unwrap();
        assert_eq!(check_received(&t.bytes).unwrap(), ThumbFormat::Jpeg);

        // A picture larger than a thumbnail (a bomb in miniature): refused.
        let mut png = Vec::new();
        image::RgbImage::new(THUMB_MAX + 1, 8)
            .write_to(&mut io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        assert!(
            check_received(&png).is_err(),
            "PNG is not a thumbnail format"
        );
        let mut jpeg = Vec::new();
        image::RgbImage::new(THUMB_MAX + 1, 8)
            .write_to(&mut io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        assert!(matches!(
            check_received(&jpeg),
            Err(ThumbError::TooLarge(_))
        ));
        // Not a picture, one that only starts like a JPEG, and one over the byte limit.
        assert!(check_received(b"<html>hello</html>").is_err());
        assert!(check_received(&[0xFF, 0xD8, 0xFF, 0, 1, 2, 3]).is_err());
        let mut huge = t.bytes.clone();
        huge.resize(MAX_RECEIVED_BYTES + 1, 0);
        assert!(matches!(
            check_received(&huge),
            Err(ThumbError::TooLarge(_))
        ));
    }

    #[test]
    fn put_many_stores_each_whole_and_replaces_the_other_format() {
        let dir = TempDir::new().unwrap();
        let store = ThumbStore::new(dir.path());
        let a = "ab".repeat(32);
        store.put(&a, b"RIFF....WEBPold").unwrap();
        let jpeg = vec![0xFF, 0xD8, 0xFF, 1, 2, 3];
        let items = vec![
            (a.clone(), jpeg.clone()),
            ("cd".repeat(32), b"RIFF....WEBPx".to_vec()),
        ];
        store.put_many(&items).unwrap();
        let (path, format) = store.find(&a).unwrap();
        assert_eq!((format, fs::read(path).unwrap()), (ThumbFormat::Jpeg, jpeg));
        assert!(store
            .path_for(&a, ThumbFormat::Webp)
            .is_some_and(|p| !p.exists()));
        assert!(store.has(&"cd".repeat(32)));
        // A bad id stops the batch and leaves no temporary file behind.
        assert!(store.put_many(&[("../x".into(), vec![1])]).is_err());
        assert_eq!(store.remove_temp_files().unwrap(), 0);
    }

    #[test]
    fn eviction_drops_the_least_recently_used_unprotected_thumbnails() {
        let dir = TempDir::new().unwrap();
        let store = ThumbStore::new(dir.path());
        let ids: Vec<String> = (0..5u8).map(|i| format!("{i:02x}").repeat(32)).collect();
        for (age, id) in ids.iter().enumerate() {
            let p = store.put(id, &[0xFF, 0xD8, 0xFF].repeat(100)).unwrap();
            // ids[0] is the oldest use, ids[4] the newest.
            let t = std::time::SystemTime::now()
                - std::time::Duration::from_secs(10_000 - age as u64 * 1000);
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        assert_eq!(store.usage().unwrap().len(), 5);
        // Under the cap: nothing goes.
        assert!(store.evict(10_000, |_| false).unwrap().0.is_empty());
        // 1,500 bytes against a cap of 1,000 (goal 900): two go, oldest use first; ids[1] is
        // kept, and ids[2], used just now, is no longer among the oldest.
        store.touch(&ids[2]);
        let (gone, left) = store.evict(1000, |h| h == ids[1]).unwrap();
        assert_eq!(gone, vec![ids[0].clone(), ids[3].clone()]);
        assert_eq!(left, 900);
        assert!(store.has(&ids[1]) && store.has(&ids[2]) && !store.has(&ids[3]));
    }
}
