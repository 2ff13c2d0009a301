//! A small filesystem of its own for disk-full tests: a loop-mounted ext4
//! image, or tmpfs with `size=` where the machine has no loop devices. The
//! tests run as root (mount needs it; CI does too). Unmounted on drop, even
//! when the test fails. `LARDER_TEST_SMALL_FS=tmpfs` takes the fallback on
//! purpose, to try it on a machine that has loop devices.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the filesystem: room for a node's or the payments service's
/// sled files with the demo district, small enough to fill in a moment.
pub const SMALL_FS_MIB: u64 = 64;
/// Ballast is written in chunks this big, then in [`BALLAST_TAIL_BYTES`]
/// once the disk refuses a big one, so that no free block is left.
const BALLAST_CHUNK_BYTES: usize = 1 << 20;
const BALLAST_TAIL_BYTES: usize = 512;

pub struct SmallFs {
    /// The mount point.
    mount: tempfile::TempDir,
    /// Holds the ext4 image (none for tmpfs).
    _image: tempfile::TempDir,
    /// `ext4 (loop)` or `tmpfs`, for messages.
    pub kind: &'static str,
}

impl SmallFs {
    /// Mounts a fresh [`SMALL_FS_MIB`] filesystem on a temporary directory.
    pub fn mount() -> SmallFs {
        let mount = tempfile::tempdir().expect("tempdir");
        let image = tempfile::tempdir().expect("tempdir");
        let img = image.path().join("fs.img");
        let tmpfs_wanted = std::env::var("LARDER_TEST_SMALL_FS").is_ok_and(|v| v == "tmpfs");
        let kind = if !tmpfs_wanted && mount_ext4(&img, mount.path()).is_ok() {
            "ext4 (loop)"
        } else {
            let size = format!("size={SMALL_FS_MIB}m");
            run(
                "mount",
                &["-t", "tmpfs", "-o", &size, "tmpfs"],
                mount.path(),
            )
            .unwrap_or_else(|e| {
                panic!("cannot mount a small filesystem (ext4 image nor tmpfs; run as root): {e}")
            });
            "tmpfs"
        };
        SmallFs {
            mount,
            _image: image,
            kind,
        }
    }

    pub fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Writes a ballast file until the filesystem refuses more (ENOSPC);
    /// returns its path. Remove it to give the space back.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("ballast");
        let mut file = std::fs::File::create(&path).expect("create ballast");
        for chunk in [BALLAST_CHUNK_BYTES, BALLAST_TAIL_BYTES] {
            let bytes = vec![0xA5u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        // Allocated, not merely dirty pages, so the node meets ENOSPC itself.
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // A process still holding a file (a test that panicked before its
        // node was killed) makes a plain unmount fail: detach it lazily.
        if run("umount", &[], self.path()).is_err() {
            let _ = run("umount", &["-l"], self.path());
        }
    }
}

fn mount_ext4(img: &Path, at: &Path) -> Result<(), String> {
    let file = std::fs::File::create(img).map_err(|e| e.to_string())?;
    file.set_len(SMALL_FS_MIB << 20)
        .map_err(|e| e.to_string())?;
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(img)
        .status()
        .map_err(|e| format!("mkfs.ext4: {e} (scripts/ensure-mkfs installs it)"))?;
    if !status.success() {
        return Err(format!("mkfs.ext4: {status}"));
    }
    run("mount", &["-o", "loop", &img.to_string_lossy()], at)
}

/// `program args… target`, an error with its stderr when it fails.
fn run(program: &str, args: &[&str], target: &Path) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .arg(target)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
