//! Whether opening a file would run it: what an "Open" button must ask about first.
//!
//! A library's folders hold files that came from peers (Spacedrop into a watched folder).
//! Opening a document shows it; opening a program runs it with the user's rights: Windows runs
//! `.exe`, `.bat`, `.ps1`…, macOS runs `.command` and installs `.pkg`, a Linux desktop launches
//! `.desktop` files and AppImages. So the app asks before opening any of these.
//!
//! Two tests, either is enough:
//! - the name's last extension (case-insensitive) is a program's: "invoice.pdf.exe" is one;
//! - on Unix, the file has an execute bit *and* starts like a program (ELF, or `#!`). The bit
//!   alone means little: FAT and NTFS mounts mark every file executable.
//!
//! A symlink is judged by its own name and by what it points to. A file that cannot be read is
//! judged by its name alone (opening it would fail anyway).

use std::path::Path;

/// Extensions that run, install or launch something when opened, on some desktop OS.
const PROGRAM_EXTENSIONS: [&str; 4] = [
    // Windows: executables, installers, scripts, shortcuts and other shell-executed types.
    "exe com scr pif bat cmd msi msp mst msix msixbundle appx appxbundle appinstaller ps1 psm1 \
     vbs vbe js jse wsf wsh wsc hta cpl msc lnk url reg inf scf jar application gadget \
     settingcontent-ms chm",
    // macOS: scripts, installers, automations.
    "command tool pkg mpkg workflow terminal scpt applescript",
    // Linux desktops: launchers, self-running images, packages, shell scripts.
    "desktop appimage run deb rpm flatpakref snap sh bash zsh csh ksh fish",
    // Interpreted scripts that desktops hand to their interpreter.
    "py pyw pyz pl rb",
];

/// Whether opening `path` with the system's default handler could run code.
pub fn runs_when_opened(path: &Path) -> bool {
    if has_program_extension(path) {
        return true;
    }
    // What a symlink points to (a missing target: nothing to run).
    if let Ok(target) = std::fs::canonicalize(path) {
        if target != path && has_program_extension(&target) {
            return true;
        }
    }
    executable_program(path)
}

fn has_program_extension(path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return false;
    };
    PROGRAM_EXTENSIONS
        .iter()
        .flat_map(|list| list.split_ascii_whitespace())
        .any(|p| p.eq_ignore_ascii_case(ext))
}

#[cfg(unix)]
fn executable_program(path: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"\x7fELF") || head[..n].starts_with(b"#!")
}

#[cfg(not(unix))]
fn executable_program(_path: &Path) -> bool {
    // Windows decides by name, which the extension list covers.
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn programs_by_name_whatever_their_case_or_disguise() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "setup.exe",
            "SETUP.EXE",
            "invoice.pdf.exe",
            "run.Bat",
            "a.desktop",
            "x.AppImage",
            "i.pkg",
            "s.sh",
            "t.py",
        ] {
            let p = dir.path().join(name);
            fs::write(&p, b"whatever").unwrap();
            assert!(runs_when_opened(&p), "{name} runs when opened");
        }
        for name in [
            "photo.jpg",
            "notes.txt",
            "report.pdf",
            "exe",
            "movie.mkv",
            "README",
            "archive.zip",
        ] {
            let p = dir.path().join(name);
            fs::write(&p, b"whatever").unwrap();
            assert!(!runs_when_opened(&p), "{name} does not run when opened");
        }
    }

    #[cfg(unix)]
    #[test]
    fn executable_bit_counts_only_for_what_starts_like_a_program() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, body: &[u8], mode: u32| {
            let p = dir.path().join(name);
            fs::write(&p, body).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let script = file("tool", b"#!/bin/sh\necho hi\n", 0o755);
        let elf = file("daemon", b"\x7fELF\x02\x01\x01", 0o700);
        let plain_script = file("notes-with-shebang", b"#!/bin/sh\n", 0o644);
        let fat_photo = file("photo.jpg", b"\xff\xd8\xff\xe0", 0o777);
        assert!(runs_when_opened(&script));
        assert!(runs_when_opened(&elf));
        assert!(
            !runs_when_opened(&plain_script),
            "no execute bit: a text file"
        );
        assert!(
            !runs_when_opened(&fat_photo),
            "an execute bit on a picture (FAT/NTFS mount)"
        );

        // A link is judged by what it points to as well as by its own name.
        let disguised = dir.path().join("holiday.jpg");
        symlink(&script, &disguised).unwrap();
        assert!(runs_when_opened(&disguised));
        let to_installer = dir.path().join("click-me");
        symlink(file("update.msi", b"", 0o644), &to_installer).unwrap();
        assert!(runs_when_opened(&to_installer));
        assert!(!runs_when_opened(&dir.path().join("missing")));
    }
}
