//! A reader that knows how many bytes the file has left.
//!
//! Every length read from the file is checked against the remaining bytes
//! before anything is allocated for it, so a corrupt count cannot make troupe
//! allocate gigabytes, and running out of file is a `Truncated` error naming
//! the part being read.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::GgufError;

/// Strings longer than this are refused even when the file could hold them:
/// the longest real ones (chat templates) are tens of KB.
pub(crate) const MAX_STRING_LEN: u64 = 64 << 20;

pub(crate) struct BoundedReader {
    inner: BufReader<File>,
    path: PathBuf,
    pos: u64,
    file_size: u64,
}

impl BoundedReader {
    pub(crate) fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_size = file.metadata().map_err(io)?.len();
        Ok(Self {
            inner: BufReader::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            pos: 0,
            file_size,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn file_size(&self) -> u64 {
        self.file_size
    }

    pub(crate) fn remaining(&self) -> u64 {
        self.file_size.saturating_sub(self.pos)
    }

    pub(crate) fn truncated(&self, what: &str, offset: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path.clone(),
            what: what.to_string(),
            offset,
        }
    }

    pub(crate) fn too_large(&self, what: &str, value: u64, limit: u64) -> GgufError {
        GgufError::TooLarge {
            path: self.path.clone(),
            what: what.to_string(),
            value,
            limit,
        }
    }

    /// Fills `buf`, or fails with `Truncated` naming `what`.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        let start = self.pos;
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(self.truncated(what, start)),
            Err(source) => Err(GgufError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf, what)?;
        Ok(buf)
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads a u64-length-prefixed byte string of at most `limit` bytes.
    pub(crate) fn bytes(&mut self, what: &str, limit: u64) -> Result<Vec<u8>, GgufError> {
        let start = self.pos;
        let len = self.u64(what)?;
        if len > limit {
            return Err(self.too_large(&format!("the length of {what}"), len, limit));
        }
        if len > self.remaining() {
            return Err(self.truncated(what, start));
        }
        // `len` is bounded by the bytes left in the file, so this allocation
        // is backed by real data.
        let mut buf = vec![0u8; len as usize];
        self.read_exact(&mut buf, what)?;
        Ok(buf)
    }

    /// Reads a string that must be UTF-8 (keys, tensor names).
    pub(crate) fn strict_string(&mut self, what: &str, limit: u64) -> Result<String, GgufError> {
        let bytes = self.bytes(what, limit)?;
        String::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 {
            path: self.path.clone(),
            what: what.to_string(),
        })
    }

    /// Reads a string value; invalid UTF-8 is replaced rather than refused,
    /// because some converted vocabularies hold such tokens and llama.cpp
    /// loads them. The flag says whether the bytes were valid UTF-8.
    pub(crate) fn lossy_string(&mut self, what: &str) -> Result<(String, bool), GgufError> {
        let bytes = self.bytes(what, MAX_STRING_LEN)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => (s, true),
            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), false),
        })
    }
}
