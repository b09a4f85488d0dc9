//! Bounded reads of files that configuration or a command-line flag names.
//!
//! Such a path may point anywhere: `/dev/zero` or `/dev/urandom` (endless), a
//! FIFO (blocks at open until someone writes), a directory, a huge file.
//! [`read_limited`] opens without blocking, refuses anything but a regular
//! file, and never reads more than its limit plus one byte.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;
use zeroize::Zeroize as _;

/// Read the regular file at `path`, which must hold at most `limit` bytes.
///
/// Errors (plain `io::Error`s for the caller to prefix with the path and the
/// setting that named it): the open fails; the path is not a regular file
/// (`InvalidInput`, naming what it is); the file holds more than `limit`
/// bytes (`FileTooLarge`). The buffer is allocated once (`limit + 1` bytes)
/// and never grows, and is zeroed before an error is returned, so a caller
/// that wraps the result in a `Secret` leaves no stray copy of a key behind.
pub fn read_limited(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer. It changes nothing for the regular files we accept.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", kind(meta.file_type())),
        ));
    }
    if meta.len() > limit as u64 {
        return Err(too_large(limit));
    }
    let mut buf = vec![0u8; limit.saturating_add(1)];
    let n = match fill(&file, &mut buf) {
        Ok(n) => n,
        Err(e) => {
            buf.zeroize();
            return Err(e);
        }
    };
    if n > limit {
        // It grew after the size check.
        buf.zeroize();
        return Err(too_large(limit));
    }
    buf.truncate(n);
    Ok(buf)
}

/// Read until `buf` is full or the file ends; returns the bytes read.
fn fill(mut file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn too_large(limit: usize) -> io::Error {
    let size = if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit.is_multiple_of(1 << 10) {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    };
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than the {size} allowed"),
    )
}

fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn err(path: &Path, limit: usize) -> (io::ErrorKind, String) {
        let e = read_limited(path, limit).expect_err("must be refused");
        (e.kind(), e.to_string())
    }

    #[test]
    fn reads_a_regular_file_up_to_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").expect("write");
        assert_eq!(read_limited(&p, 10).expect("read"), b"0123456789");
        assert_eq!(read_limited(&p, 1 << 20).expect("read"), b"0123456789");
        assert_eq!(
            err(&p, 9),
            (
                io::ErrorKind::FileTooLarge,
                "larger than the 9 bytes allowed".to_owned()
            )
        );
        std::fs::write(&p, vec![b'x'; 4097]).expect("write");
        assert_eq!(
            err(&p, 4096),
            (
                io::ErrorKind::FileTooLarge,
                "larger than the 4 KiB allowed".to_owned()
            )
        );
    }

    #[test]
    fn dev_zero_fifo_and_directory_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let start = Instant::now();
        for (path, what) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
        ] {
            assert_eq!(
                err(path, 1 << 20),
                (
                    io::ErrorKind::InvalidInput,
                    format!("not a regular file ({what})")
                ),
                "{}",
                path.display()
            );
        }
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err(&dir.path().join("missing"), 10).0,
            io::ErrorKind::NotFound
        );
    }
}
