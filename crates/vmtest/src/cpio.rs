//! A writer for the `newc` cpio format, the only one the kernel unpacks as an initramfs.

use std::io::{self, Write};

/// What an archive entry is; the kernel needs nothing else (no device nodes: devtmpfs makes them).
pub enum Entry<'a> {
    Dir,
    File(&'a [u8]),
    Symlink(&'a str),
}

/// Appends entries to a `newc` archive; [`Writer::finish`] writes the trailer.
pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            ino: 1,
            written: 0,
        }
    }

    /// `name` is relative to the archive root (no leading `/`); `mode` holds the permission bits.
    pub fn add(&mut self, name: &str, mode: u32, entry: Entry<'_>) -> io::Result<()> {
        let (kind, data): (u32, &[u8]) = match entry {
            Entry::Dir => (0o040000, &[]),
            Entry::File(d) => (0o100000, d),
            Entry::Symlink(target) => (0o120000, target.as_bytes()),
        };
        let ino = self.ino;
        self.ino += 1;
        self.record(name, ino, kind | (mode & 0o7777), data)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.record("TRAILER!!!", 0, 0, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn record(&mut self, name: &str, ino: u32, mode: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: larger than 4 GiB"),
            )
        })?;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 1, 0, 0, 0, 0, 0, 0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Header+name and data are each padded to 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_layout_and_padding() {
        let mut w = Writer::new(Vec::new());
        w.add("a", 0o755, Entry::File(b"xyz")).unwrap();
        let out = w.finish().unwrap();
        // 110-byte header + "a\0" = 112 (aligned), data 3 -> padded to 4.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[14..22], b"000081ed"); // regular file, 0755
        assert_eq!(&out[54..62], b"00000003"); // file size
        assert_eq!(&out[94..102], b"00000002"); // name size with NUL
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..116], b"xyz\0");
        assert!(out[116..].starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
    }
}
