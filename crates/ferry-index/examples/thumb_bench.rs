//! Thumbnailing throughput on photo-like 4 MP JPEGs.
//!
//! ```sh
//! cargo run --release -p ferry-index --example thumb_bench -- [COUNT]   # default 1000
//! ```
//!
//! Generates COUNT distinct 2448×1632 JPEGs (smooth colour fields, edges and sensor-like noise,
//! so they compress like photos: about 1–2 MB each) in a temporary directory, then thumbnails
//! them all with one thread per core and prints throughput, thumbnail size and peak memory.
//! Generation is not timed. The files were just written, so they are read from the page cache:
//! this measures decoding, resizing and encoding, not the disk. Then it times each stage on one
//! picture, and the resize filters against each other. Figures only, no assertions.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_index::thumb::{self, THUMB_MAX};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, Rgb, RgbImage};

const WIDTH: u32 = 2448;
const HEIGHT: u32 = 1632;
const QUALITY: u8 = 90;

fn main() {
    let count: usize = match std::env::args().nth(1) {
        None => 1000,
        Some(arg) => match arg.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: thumb_bench [COUNT]  (COUNT > 0, default 1000)");
                std::process::exit(2);
            }
        },
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = match tempfile::TempDir::new() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };

    eprint!("generating {count} JPEGs of {WIDTH}×{HEIGHT} on {threads} threads… ");
    let started = Instant::now();
    let paths: Vec<PathBuf> = (0..count)
        .map(|i| dir.path().join(format!("photo-{i:05}.jpg")))
        .collect();
    parallel(threads, count, |i| {
        let bytes = photo_jpeg(i as u64);
        if let Err(e) = fs::write(&paths[i], bytes) {
            eprintln!("cannot write {}: {e}", paths[i].display());
            std::process::exit(1);
        }
    });
    let input_bytes: u64 = paths
        .iter()
        .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    eprintln!("{:.1} s", started.elapsed().as_secs_f64());

    // Peak RSS so far is the generator's; reset it so the figure below is the thumbnailer's.
    let hwm_reset = fs::write("/proc/self/clear_refs", "5").is_ok();

    let thumb_bytes = AtomicU64::new(0);
    let failures = AtomicUsize::new(0);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    parallel(threads, count, |i| match thumb::thumbnail(&paths[i]) {
        Ok(t) => {
            thumb_bytes.fetch_add(t.bytes.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            failures.fetch_add(1, Ordering::Relaxed);
            eprintln!("{}: {e}", paths[i].display());
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let peak_rss = vm_hwm_kib();

    let done = count - failures.load(Ordering::Relaxed);
    println!(
        "pictures:          {count} × {WIDTH}×{HEIGHT} JPEG (q{QUALITY}), mean {:.2} MB",
        input_bytes as f64 / count as f64 / 1e6
    );
    println!("threads:           {threads}");
    println!("wall time:         {elapsed:.2} s");
    println!("thumbnails/s:      {:.1}", done as f64 / elapsed);
    println!(
        "input MB/s:        {:.1}",
        input_bytes as f64 / 1e6 / elapsed
    );
    // Wall-clock figures suffer when something else runs; CPU time per picture does not
    // (much), and times the core count gives the throughput of an idle machine.
    if let Some(cpu) = cpu {
        println!(
            "CPU per thumbnail: {:.1} ms ({:.1} thumbnails per core-second; CPU use {:.0}% of {threads} cores)",
            cpu * 1e3 / count as f64,
            count as f64 / cpu,
            cpu / elapsed / threads as f64 * 100.0
        );
    }
    println!(
        "mean thumb size:   {:.0} bytes (JPEG q{} when opaque, ≤{THUMB_MAX} px)",
        thumb_bytes.load(Ordering::Relaxed) as f64 / done.max(1) as f64,
        thumb::JPEG_QUALITY
    );
    match peak_rss {
        Some(kib) => println!(
            "peak RSS:          {:.1} MiB{}",
            kib as f64 / 1024.0,
            if hwm_reset {
                ""
            } else {
                " (includes generation)"
            }
        ),
        None => println!("peak RSS:          unavailable (no /proc/self/status)"),
    }
    if failures.load(Ordering::Relaxed) > 0 {
        println!("failures:          {}", failures.load(Ordering::Relaxed));
    }

    stages(&paths[0]);
}

/// Runs `job(i)` for every `i < count` on `threads` threads.
fn parallel(threads: usize, count: usize, job: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                job(i);
            });
        }
    });
}

/// One thread's cost of each stage on one picture, and of the resize filters.
fn stages(path: &Path) {
    const ROUNDS: u32 = 10;
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..ROUNDS {
            f();
        }
        started.elapsed() / ROUNDS
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    let Ok(image) = image::open(path) else {
        println!("cannot decode {}", path.display());
        return;
    };
    let decode = time(&mut || {
        let _ = image::open(path);
    });
    let whole = time(&mut || {
        let _ = thumb::thumbnail(path);
    });
    let (tw, th) = (THUMB_MAX, THUMB_MAX * HEIGHT / WIDTH);
    let small = image.thumbnail_exact(tw, th).to_rgb8();
    let encode = time(&mut || {
        let mut out = Vec::new();
        let _ = JpegEncoder::new_with_quality(&mut out, thumb::JPEG_QUALITY).encode(
            small.as_raw(),
            tw,
            th,
            ExtendedColorType::Rgb8,
        );
    });

    println!();
    println!("one picture, one thread ({ROUNDS} rounds):");
    println!("  thumbnail() total   {:7.1} ms", ms(whole));
    println!("  JPEG decode         {:7.1} ms", ms(decode));
    println!("  JPEG encode         {:7.2} ms", ms(encode));
    let mut webp = Vec::new();
    let mut jpeg = Vec::new();
    let sizes = WebPEncoder::new_lossless(&mut webp)
        .encode(small.as_raw(), tw, th, ExtendedColorType::Rgb8)
        .and_then(|()| {
            JpegEncoder::new_with_quality(&mut jpeg, thumb::JPEG_QUALITY).encode_image(&small)
        });
    if sizes.is_ok() {
        println!(
            "  thumbnail bytes     {} as JPEG q{} (used for opaque pictures), {} as lossless WebP",
            jpeg.len(),
            thumb::JPEG_QUALITY,
            webp.len()
        );
    }
    println!("  resize to {tw}×{th}:");
    let box_filter = time(&mut || {
        let _ = image.thumbnail_exact(tw, th);
    });
    println!("    box (thumbnail_exact, used)  {:7.1} ms", ms(box_filter));
    for filter in [
        FilterType::Triangle,
        FilterType::CatmullRom,
        FilterType::Lanczos3,
    ] {
        let d = time(&mut || {
            let _ = image.resize_exact(tw, th, filter);
        });
        println!("    {:<28} {:7.1} ms", format!("{filter:?}"), ms(d));
    }
    let two_step = time(&mut || {
        let _ = image
            .thumbnail_exact(tw * 2, th * 2)
            .resize_exact(tw, th, FilterType::Triangle);
    });
    println!("    box to 2×, then Triangle     {:7.1} ms", ms(two_step));
}

/// User plus system CPU time of this process so far.
#[cfg(unix)]
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole rusage into the pointer on success.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

#[cfg(not(unix))]
fn cpu_seconds() -> Option<f64> {
    None
}

fn vm_hwm_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A photo-like picture: a few smooth colour fields, hard-edged shapes, fine texture and
/// per-pixel noise (what makes real photos 1–2 MB at this size), different for each `seed`.
fn photo_jpeg(seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut phase = || rng.unit() * std::f32::consts::TAU;
    let waves: [(f32, f32, f32); 3] = [
        (phase(), phase(), phase()),
        (phase(), phase(), phase()),
        (phase(), phase(), phase()),
    ];
    let discs: Vec<(f32, f32, f32, [f32; 3])> = (0..12)
        .map(|_| {
            (
                rng.unit() * WIDTH as f32,
                rng.unit() * HEIGHT as f32,
                40.0 + rng.unit() * 300.0,
                [rng.unit() * 255.0, rng.unit() * 255.0, rng.unit() * 255.0],
            )
        })
        .collect();
    let mut noise = XorShift(seed ^ 0xDEAD_BEEF_CAFE_F00D | 1);

    let img = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let (fx, fy) = (x as f32 / WIDTH as f32, y as f32 / HEIGHT as f32);
        let mut px = [0f32; 3];
        for (c, (p1, p2, p3)) in waves.iter().enumerate() {
            px[c] = 128.0
                + 60.0 * (fx * 3.0 + p1).sin()
                + 40.0 * (fy * 5.0 + p2).sin()
                + 15.0 * ((fx + fy) * 40.0 + p3).sin();
        }
        for &(cx, cy, r, colour) in &discs {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            if dx * dx + dy * dy < r * r {
                for c in 0..3 {
                    px[c] = 0.5 * px[c] + 0.5 * colour[c];
                }
            }
        }
        // Sensor noise: up to ±17 per channel, mostly shared (luma), partly not (chroma).
        let luma = noise.unit() * 24.0 - 12.0;
        let mut out = [0u8; 3];
        for c in 0..3 {
            let v = px[c] + luma + noise.unit() * 10.0 - 5.0;
            out[c] = v.clamp(0.0, 255.0) as u8;
        }
        Rgb(out)
    });

    let mut bytes = Vec::new();
    if let Err(e) = JpegEncoder::new_with_quality(&mut bytes, QUALITY)
        .encode_image(&DynamicImage::ImageRgb8(img))
    {
        eprintln!("cannot encode a JPEG: {e}");
        std::process::exit(1);
    }
    bytes
}

/// xorshift64*: enough randomness for test pictures, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}
